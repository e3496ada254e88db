//! Accounts and tokens over HTTP: register, login, refresh rotation with reuse detection,
//! logout, `/users/me`, roles and the audited role change.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_app_http::Application;
use keel_domain::audit::{AuditLimit, AuditQuery};
use serde_json::{Value, json};

use crate::accounts::{
    ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, account, get_as, login, post, register,
    spawn_with_admin, tokens,
};
use crate::support::{TestApp, assert_problem, spawn_app, test_settings};

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn register_then_login_then_me() {
    let app = spawn_app().await;
    let user = register(&app, "  Thandi@Example.COM ").await;
    assert_eq!(user["email"], "thandi@example.com", "emails are normalised");
    assert_eq!(user["role"], "participant");
    assert!(user.get("phone").is_none() && user.get("password").is_none());

    let pair = tokens(&app, "thandi@example.com", PASSWORD).await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let body: Value = me(&app, pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["id"], user["id"]);
}

#[tokio::test]
async fn registration_rules_and_unique_email() {
    let app = spawn_app().await;
    register(&app, "dup@example.com").await;
    let again = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "DUP@example.com", "password": PASSWORD, "display_name": "Other"}),
    )
    .await;
    assert_problem(again, 409, "email-taken").await;

    let bad = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "nope", "password": "short", "display_name": " "}),
    )
    .await;
    let body = assert_problem(bad, 422, "validation-failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "display_name", "password"]);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = spawn_app().await;
    register(&app, "known@example.com").await;
    let wrong = assert_problem(
        login(&app, "known@example.com", "not-the-password!!").await,
        401,
        "invalid-credentials",
    )
    .await;
    let unknown = assert_problem(
        login(&app, "ghost@example.com", PASSWORD).await,
        401,
        "invalid-credentials",
    )
    .await;
    for field in ["type", "title", "detail", "status"] {
        assert_eq!(
            wrong[field], unknown[field],
            "{field} must not tell the cases apart"
        );
    }
}

#[tokio::test]
async fn bad_access_tokens_are_401_and_missing_ones_unauthenticated() {
    let app = spawn_app().await;
    let missing = app.get("/api/v1/users/me").await;
    assert_problem(missing, 401, "unauthenticated").await;

    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        br#"{"sub":"00000000-0000-0000-0000-000000000000","role":"admin","iat":0,"nbf":0,"exp":9999999999,"iss":"keel","aud":"keel-api","jti":"x"}"#,
    );
    let unsigned = format!("{header}.{claims}.");
    for token in ["garbage", unsigned.as_str()] {
        let response = me(&app, token).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        assert_problem(response, 401, "invalid-token").await;
    }
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_family() {
    let app = spawn_app().await;
    register(&app, "rot@example.com").await;
    let first = tokens(&app, "rot@example.com", PASSWORD).await;
    let second_response = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": first["refresh_token"]}),
    )
    .await;
    assert_eq!(second_response.status(), 200);
    let second: Value = second_response.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(
        me(&app, second["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    // The first token is presented again (stolen?): the whole family dies.
    let reused = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": first["refresh_token"]}),
    )
    .await;
    assert_problem(reused, 401, "refresh-token-reused").await;
    let newest = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": second["refresh_token"]}),
    )
    .await;
    assert_problem(newest, 401, "invalid-refresh-token").await;

    // Another session of the same user is untouched.
    let other = tokens(&app, "rot@example.com", PASSWORD).await;
    let ok = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": other["refresh_token"]}),
    )
    .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn logout_revokes_the_session() {
    let app = spawn_app().await;
    register(&app, "bye@example.com").await;
    let pair = tokens(&app, "bye@example.com", PASSWORD).await;
    let out = post(
        &app,
        "/api/v1/auth/logout",
        json!({"refresh_token": pair["refresh_token"]}),
    )
    .await;
    assert_eq!(out.status(), 204);
    let after = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": pair["refresh_token"]}),
    )
    .await;
    assert_eq!(after.status(), 401);
    let garbage = post(
        &app,
        "/api/v1/auth/logout",
        json!({"refresh_token": "nope"}),
    )
    .await;
    assert_problem(garbage, 401, "invalid-refresh-token").await;
}

#[tokio::test]
async fn only_admins_change_roles_and_changes_are_audited() {
    let (app, stores) = spawn_with_admin(&[]).await;
    let user = register(&app, "p@example.com").await;
    let id = user["id"].as_str().unwrap();
    let participant = tokens(&app, "p@example.com", PASSWORD).await;
    let admin = tokens(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let patch = |token: &str, target: &str, role: &str| {
        app.client
            .patch(app.url(&format!("/api/v1/admin/users/{target}")))
            .bearer_auth(token)
            .json(&json!({"role": role, "reason": "runs the spring games"}))
            .send()
    };
    let denied = patch(participant["access_token"].as_str().unwrap(), id, "admin")
        .await
        .unwrap();
    assert_problem(denied, 403, "forbidden").await;
    let anonymous = app
        .client
        .patch(app.url(&format!("/api/v1/admin/users/{id}")))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "unauthenticated").await;

    let admin_token = admin["access_token"].as_str().unwrap();
    let changed = patch(admin_token, id, "organizer").await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.json::<Value>().await.unwrap()["role"], "organizer");
    let bad_role = patch(admin_token, id, "emperor").await.unwrap();
    assert_problem(bad_role, 422, "validation-failed").await;
    let missing = patch(admin_token, "00000000-0000-0000-0000-000000000000", "admin")
        .await
        .unwrap();
    assert_problem(missing, 404, "not-found").await;
    let not_a_uuid = patch(admin_token, "not-a-uuid", "admin").await.unwrap();
    assert_problem(not_a_uuid, 404, "not-found").await;

    // Audited with actor, before/after, reason and the request id; the chain stays intact.
    let query = AuditQuery {
        action: Some("user.role_changed".into()),
        limit: AuditLimit::new(10).unwrap(),
        ..AuditQuery::default()
    };
    let page = stores.audit.list(&query).await.unwrap();
    assert_eq!(page.items.len(), 1, "one successful change, one entry");
    let entry = &page.items[0].entry;
    assert_eq!(entry.subject, format!("user:{id}"));
    assert_eq!(entry.before, Some(json!({"role": "participant"})));
    assert_eq!(entry.after, Some(json!({"role": "organizer"})));
    assert_eq!(entry.reason.as_deref(), Some("runs the spring games"));
    assert!(entry.request_id.is_some());
    assert!(stores.audit.verify().await.unwrap().is_intact());

    // The new role takes effect with the next token.
    let again = tokens(&app, "p@example.com", PASSWORD).await;
    let body: Value = me(&app, again["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["role"], "organizer");
}

#[tokio::test]
async fn the_bootstrap_admin_is_created_once() {
    let (app, stores) = spawn_with_admin(&[]).await;
    // A second node starting on the same stores finds the admin and creates nothing.
    let again = Application::start_over(
        test_settings(&[
            ("KEEL_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
            ("KEEL_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ]),
        stores.clone(),
        crate::support::no_routes(),
    )
    .await;
    assert!(again.is_ok());
    let pair = tokens(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let body: Value = me(&app, pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["role"], "admin");
}

#[tokio::test]
async fn logins_are_limited_per_account_across_addresses() {
    let (app, _) = spawn_with_admin(&[
        ("KEEL_RATE_AUTH", "3/hour"),
        ("KEEL_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    for i in 0..3 {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"email": "victim@example.com", "password": "guess-number-xyz"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let fourth = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "198.51.100.99")
        .json(&json!({"email": "VICTIM@example.com", "password": "guess-number-xyz"}))
        .send()
        .await
        .unwrap();
    assert_problem(fourth, 429, "rate-limited").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgres_pii_is_ciphertext_and_registration_replays_on_its_key() {
    use diesel_async::RunQueryDsl;
    let Some(app) = crate::support::spawn_app_on_services().await else {
        return;
    };
    let body = json!({"email": "pg@example.com", "password": PASSWORD, "display_name": "Pg", "phone": "+27821234321"});
    let send = || {
        app.client
            .post(app.url("/api/v1/auth/register"))
            .header("idempotency-key", "register-1")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first_body = first.bytes().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.bytes().await.unwrap(),
        first_body,
        "the replay is byte-for-byte"
    );

    #[derive(diesel::QueryableByName)]
    struct Pii {
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        ciphertext: Vec<u8>,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        users: i64,
    }
    let mut conn = app.db.as_ref().unwrap().pool().get().await.unwrap();
    let rows: Vec<Pii> = diesel::sql_query(
        "SELECT p.ciphertext, (SELECT count(*) FROM users) AS users FROM user_pii p WHERE p.field = 'phone'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].users, 1,
        "one account however often the request is replayed"
    );
    let plaintext = b"+27821234321";
    assert!(
        !rows[0]
            .ciphertext
            .windows(plaintext.len())
            .any(|w| w == plaintext),
        "PII is ciphertext at rest"
    );
    assert_eq!(login(&app, "pg@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn pii_is_shown_by_role_and_every_staff_read_is_audited() {
    let (app, _) = spawn_with_admin(&[]).await;
    let admin = tokens(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin_token = admin["access_token"].as_str().unwrap();
    let (owner_id, owner) = account(&app, admin_token, "owner@example.com", "participant").await;
    let (_, stranger) = account(&app, admin_token, "stranger@example.com", "participant").await;
    let (_, organizer) = account(&app, admin_token, "org@example.com", "organizer").await;
    let (_, support) = account(&app, admin_token, "support@example.com", "support").await;
    let path = format!("/api/v1/users/{owner_id}/pii");

    let own: Value = get_as(&app, &owner, &path).await.json().await.unwrap();
    assert_eq!(own["phone"], "+27821234321");
    assert_eq!(own["masked"], false);

    assert_problem(get_as(&app, &stranger, &path).await, 403, "forbidden").await;

    let masked: Value = get_as(&app, &organizer, &path).await.json().await.unwrap();
    assert_eq!(masked["phone"], "+27•••••321");
    assert_eq!(masked["masked"], true);

    assert_problem(get_as(&app, &support, &path).await, 400, "bad-request").await;
    let reasoned = get_as(&app, &support, &format!("{path}?reason=ticket%2042")).await;
    let read_request_id = reasoned.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let full: Value = reasoned.json().await.unwrap();
    assert_eq!(full["phone"], "+27821234321");

    let audit: Value = get_as(&app, admin_token, "/api/v1/admin/audit?action=pii.read")
        .await
        .json()
        .await
        .unwrap();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only the staff read is audited: {audit}");
    assert_eq!(items[0]["subject"], format!("user:{owner_id}"));
    assert_eq!(items[0]["reason"], "ticket 42");
    assert_eq!(items[0]["request_id"], read_request_id.as_str());
    assert_eq!(items[0]["after"]["fields"], json!(["phone"]));

    let verified: Value = get_as(&app, admin_token, "/api/v1/admin/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["intact"], true);
    assert_problem(
        get_as(&app, &support, "/api/v1/admin/audit").await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        get_as(&app, admin_token, "/api/v1/admin/audit?cursor=%%%").await,
        422,
        "validation-failed",
    )
    .await;
}

#[tokio::test]
async fn accounts_are_deleted_by_their_owner_or_an_admin_only() {
    let (app, stores) = spawn_with_admin(&[]).await;
    let mut events = stores.events.subscribe();
    let admin = tokens(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin_token = admin["access_token"].as_str().unwrap();
    let (a_id, a_token) = account(&app, admin_token, "a@example.com", "participant").await;
    let (b_id, _) = account(&app, admin_token, "b@example.com", "participant").await;
    let delete = |token: &str, id: &str| {
        app.client
            .delete(app.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(token)
            .send()
    };

    assert_problem(delete(&a_token, &b_id).await.unwrap(), 403, "forbidden").await;
    assert_eq!(delete(&a_token, &a_id).await.unwrap().status(), 204);
    let published = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert_eq!(
        published,
        Some(keel_domain::events::DomainEvent::UserDeleted {
            user_id: a_id.parse().unwrap()
        }),
        "later capabilities hear of the deletion"
    );
    assert_eq!(
        login(&app, "a@example.com", PASSWORD).await.status(),
        401,
        "the account is gone"
    );
    assert_eq!(delete(admin_token, &b_id).await.unwrap().status(), 204);
    assert_problem(delete(admin_token, &b_id).await.unwrap(), 404, "not-found").await;
    let audit: Value = get_as(&app, admin_token, "/api/v1/admin/audit?action=user.deleted")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2);
}

/// Every protected route against every role: one table, one expectation per cell.
#[tokio::test]
async fn role_matrix() {
    let (app, _) = spawn_with_admin(&[]).await;
    let admin = tokens(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (target, _) = account(&app, &admin, "target@example.com", "participant").await;
    let (_, participant) = account(&app, &admin, "m-p@example.com", "participant").await;
    let (_, organizer) = account(&app, &admin, "m-o@example.com", "organizer").await;
    let (_, support) = account(&app, &admin, "m-s@example.com", "support").await;
    let callers: [(&str, Option<&str>); 5] = [
        ("anonymous", None),
        ("participant", Some(&participant)),
        ("organizer", Some(&organizer)),
        ("support", Some(&support)),
        ("admin", Some(&admin)),
    ];
    let pii = format!("/api/v1/users/{target}/pii");
    let role_change = format!("/api/v1/admin/users/{target}");
    let delete = format!("/api/v1/users/{target}");
    // (method, path, expected status for anonymous, participant, organizer, support, admin)
    let table: [(&str, &str, [u16; 5]); 6] = [
        ("GET", "/api/v1/users/me", [401, 200, 200, 200, 200]),
        ("GET", &pii, [401, 403, 200, 400, 400]),
        ("PATCH", &role_change, [401, 403, 403, 403, 200]),
        ("GET", "/api/v1/admin/audit", [401, 403, 403, 403, 200]),
        (
            "GET",
            "/api/v1/admin/audit/verify",
            [401, 403, 403, 403, 200],
        ),
        ("DELETE", &delete, [401, 403, 403, 403, 204]),
    ];
    for (method, path, expected) in table {
        for ((who, token), want) in callers.iter().zip(expected) {
            let mut request = app.client.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(path),
            );
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if method == "PATCH" {
                request = request.json(&json!({"role": "participant"}));
            }
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status, want, "{method} {path} as {who}");
        }
    }
}

#[tokio::test]
async fn minted_users_are_authenticated() {
    let (app, stores) = spawn_with_admin(&[]).await;
    let (id, token) = crate::accounts::mint_user(&stores, "organizer").await;
    let me: Value = get_as(&app, &token, "/api/v1/users/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], id.to_string());
    assert_eq!(me["role"], "organizer");
}
