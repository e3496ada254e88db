//! Wallet over HTTP: signed webhooks, withdrawals racing on one and two nodes, the simulator's
//! full flow, history and CSV, and the admin ledger tools. On Postgres + Redis when configured.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::join_all;
use keel_app_http::state::Stores;
use keel_domain::webhooks::{DEV_REVIO_PRIVATE_KEY_PEM, RevioSigner, StandardWebhookSecret};
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::accounts::{account_id, admin_token, get_as, mint_user, spawn_with_admin};
use crate::support::{TestApp, assert_problem, no_routes, spawn_on_services, spawn_second_node};

/// The simulator never completes anything by itself: the tests send the provider's webhooks.
const QUIET: &[(&str, &str)] = &[
    ("KEEL_WORKERS", "0"),
    ("KEEL_REVIO_SIM_DELAY_MS", "600000"),
    ("KEEL_WALLET_APPROVAL_THRESHOLD_MINOR", "100000"),
];

/// Longest wait for the simulator and the payout job on a slow, shared CI machine.
const WAIT: Duration = Duration::from_secs(20);

async fn post_as(
    app: &TestApp,
    token: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> Response {
    let mut request = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn deposit(app: &TestApp, token: &str, minor: i64) -> Value {
    let key = Uuid::now_v7().to_string();
    let response = post_as(
        app,
        token,
        "/api/v1/wallet/deposits",
        Some(&key),
        json!({"amount_minor": minor, "currency": "ZAR"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn withdraw(app: &TestApp, token: &str, minor: i64, key: &str) -> Response {
    post_as(
        app,
        token,
        "/api/v1/wallet/withdrawals",
        Some(key),
        json!({"amount_minor": minor, "currency": "ZAR", "destination": "bank:123"}),
    )
    .await
}

async fn balance(app: &TestApp, token: &str) -> (i64, i64, i64) {
    let body: Value = get_as(app, token, "/api/v1/wallet/balance?currency=ZAR")
        .await
        .json()
        .await
        .unwrap();
    (
        body["available"].as_i64().unwrap(),
        body["held"].as_i64().unwrap(),
        body["total"].as_i64().unwrap(),
    )
}

/// A provider event body.
pub(crate) fn event(id: &str, kind: &str, reference: &str, minor: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "type": kind, "created_at": Utc::now().to_rfc3339(),
        "data": {"reference": reference, "amount_minor": minor, "currency": "ZAR"}
    }))
    .unwrap()
}

/// Sends `body` as a Revio webhook signed with the simulator's dev key, at `timestamp`.
async fn send_signed(
    app: &TestApp,
    id: &str,
    timestamp: i64,
    body: &[u8],
    signature: Option<String>,
) -> Response {
    let signer = RevioSigner::from_pkcs8_pem(DEV_REVIO_PRIVATE_KEY_PEM).unwrap();
    let signature = signature.unwrap_or_else(|| signer.sign(id, timestamp, body).unwrap());
    app.client
        .post(app.url("/api/v1/webhooks/revio"))
        .header("content-type", "application/json")
        .header("Revio-Event-Id", id)
        .header("Revio-Timestamp", timestamp.to_string())
        .header("Revio-Signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn webhook(app: &TestApp, kind: &str, reference: &str, minor: i64) -> (String, Response) {
    let id = format!("evt_{}", Uuid::now_v7().simple());
    let body = event(&id, kind, reference, minor);
    let response = send_signed(app, &id, Utc::now().timestamp(), &body, None).await;
    (id, response)
}

async fn ack(response: Response) -> (String, String) {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    (
        body["outcome"].as_str().unwrap().to_owned(),
        body["reason"].as_str().unwrap().to_owned(),
    )
}

/// Funds `user` with an adjustment by the admin (under the approval threshold).
async fn fund(app: &TestApp, admin: &str, user: &str, minor: i64) {
    let response = post_as(
        app,
        admin,
        "/api/v1/admin/ledger/adjustments",
        Some(&Uuid::now_v7().to_string()),
        json!({"user_id": user, "amount_minor": minor, "currency": "ZAR",
               "direction": "credit", "reason": "test funding"}),
    )
    .await;
    assert_eq!(response.status(), 201);
}

async fn consistent(app: &TestApp, admin: &str) {
    let report: Value = get_as(app, admin, "/api/v1/admin/ledger/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["consistent"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_verified_before_anything_changes_and_applied_once() {
    let (app, stores) = spawn_with_admin(QUIET).await;
    let admin = admin_token(&app).await;
    let (_, token) = mint_user(&stores, "participant").await;
    let opened = deposit(&app, &token, 500).await;
    assert_eq!(opened["status"], "pending");
    assert_eq!(opened["type"], "deposit");
    assert!(opened["checkout_reference"].is_string());
    let reference = opened["id"].as_str().unwrap();
    let now = Utc::now().timestamp();

    // Forged, truncated, stale, tampered and unsigned deliveries change nothing.
    let id = "evt_forged";
    let body = event(id, "deposit.succeeded", reference, 500);
    let signer = RevioSigner::from_pkcs8_pem(DEV_REVIO_PRIVATE_KEY_PEM).unwrap();
    let good = signer.sign(id, now, &body).unwrap();
    let truncated = good[..good.len() - 8].to_owned();
    let for_other_body = signer.sign(id, now, b"{}").unwrap();
    for signature in [truncated, for_other_body, "bm90IGEgc2lnbmF0dXJl".to_owned()] {
        let response = send_signed(&app, id, now, &body, Some(signature)).await;
        assert_problem(response, 401, "invalid-webhook-signature").await;
    }
    let stale = send_signed(&app, id, now - 600, &body, None).await;
    assert_problem(stale, 401, "invalid-webhook-signature").await;
    let tampered = event(id, "deposit.succeeded", reference, 50_000);
    let response = send_signed(&app, id, now, &tampered, Some(good.clone())).await;
    assert_problem(response, 401, "invalid-webhook-signature").await;
    let unsigned = app
        .client
        .post(app.url("/api/v1/webhooks/revio"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(unsigned, 401, "invalid-webhook-signature").await;
    assert_eq!(balance(&app, &token).await, (0, 0, 0));

    // The real one settles once; its replay is a duplicate; a contradicting late event is ignored.
    let settled = send_signed(&app, id, now, &body, Some(good.clone())).await;
    assert_eq!(ack(settled).await, ("processed".into(), "settled".into()));
    let replay = send_signed(&app, id, now, &body, Some(good)).await;
    assert_eq!(
        ack(replay).await,
        ("duplicate".into(), "duplicate-event".into())
    );
    let (_, late) = webhook(&app, "deposit.failed", reference, 500).await;
    assert_eq!(ack(late).await, ("ignored".into(), "out-of-order".into()));
    let (_, skewed) = webhook(&app, "deposit.succeeded", &Uuid::now_v7().to_string(), 5).await;
    assert_eq!(
        ack(skewed).await,
        ("ignored".into(), "unknown-reference".into())
    );
    assert_eq!(balance(&app, &token).await, (500, 0, 500));

    let log: Value = get_as(&app, &admin, "/api/v1/admin/webhooks/revio?limit=50")
        .await
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "rejected").count(), 6);
    assert_eq!(outcomes.iter().filter(|o| **o == "processed").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == "duplicate").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == "ignored").count(), 2);
    let participant_view = get_as(&app, &token, "/api/v1/admin/webhooks/revio").await;
    assert_problem(participant_view, 403, "forbidden").await;
    consistent(&app, &admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_webhooks_signatures_are_accepted_when_configured() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut env = QUIET.to_vec();
    env.push(("KEEL_REVIO_WEBHOOK_SECRET", secret));
    let (app, stores) = spawn_with_admin(&env).await;
    let (_, token) = mint_user(&stores, "participant").await;
    let reference = deposit(&app, &token, 250).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = format!("msg_{}", Uuid::now_v7().simple());
    let body = event(&id, "deposit.succeeded", &reference, 250);
    let now = Utc::now().timestamp();
    let signature = StandardWebhookSecret::from_whsec(secret)
        .unwrap()
        .sign(&id, now, &body);
    let send = |signature: String| {
        app.client
            .post(app.url("/api/v1/webhooks/revio"))
            .header("webhook-id", id.clone())
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(body.clone())
            .send()
    };
    let truncated = signature[..signature.len() - 4].to_owned();
    assert_problem(
        send(truncated).await.unwrap(),
        401,
        "invalid-webhook-signature",
    )
    .await;
    assert_eq!(ack(send(signature).await.unwrap()).await.0, "processed");
    assert_eq!(balance(&app, &token).await, (250, 0, 250));
}

/// `RACERS` withdrawals of 10 from a balance of 500, spread over `nodes`: exactly 50 succeed.
async fn race_withdrawals(nodes: &[&TestApp], stores: &Stores, admin: &str) {
    const RACERS: usize = 100;
    let (user, token) = mint_user(stores, "participant").await;
    fund(nodes[0], admin, &user.to_string(), 500).await;
    let requests = (0..RACERS).map(|i| {
        let node = nodes[i % nodes.len()];
        let token = token.clone();
        async move { withdraw(node, &token, 10, &Uuid::now_v7().to_string()).await }
    });
    let responses = join_all(requests).await;
    let mut created = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => created += 1,
            422 => {
                assert_problem(response, 422, "insufficient-funds").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 50, "exactly the funds available");
    for node in nodes {
        assert_eq!(balance(node, &token).await, (0, 500, 500));
    }
    consistent(nodes[0], admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_withdrawals_never_overspend_on_one_node() {
    let (app, stores) = spawn_with_admin(QUIET).await;
    let admin = admin_token(&app).await;
    race_withdrawals(&[&app], &stores, &admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_withdrawals_never_overspend_across_two_nodes() {
    let mut env = QUIET.to_vec();
    env.extend([
        ("KEEL_BOOTSTRAP_ADMIN_EMAIL", crate::accounts::ADMIN_EMAIL),
        (
            "KEEL_BOOTSTRAP_ADMIN_PASSWORD",
            crate::accounts::ADMIN_PASSWORD,
        ),
    ]);
    let Some(first) = spawn_on_services(&env, no_routes()).await else {
        return;
    };
    let second = spawn_second_node(&first, &env, no_routes()).await;
    let settings =
        crate::support::test_settings(&[("DATABASE_URL", first.db.as_ref().unwrap().url())]);
    let stores = Stores::connect(&settings).await.unwrap();
    let admin = admin_token(&first).await;
    race_withdrawals(&[&first, &second], &stores, &admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn withdrawals_replay_on_their_key_and_refuse_bad_input() {
    let (app, stores) = spawn_with_admin(QUIET).await;
    let admin = admin_token(&app).await;
    let (user, token) = mint_user(&stores, "participant").await;
    fund(&app, &admin, &user.to_string(), 100).await;
    let first = withdraw(&app, &token, 60, "key-1").await;
    assert_eq!(first.status(), 201);
    let first_body = first.bytes().await.unwrap();
    let again = withdraw(&app, &token, 60, "key-1").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body, "byte for byte");
    assert_eq!(balance(&app, &token).await, (40, 60, 100), "held once");
    let other = withdraw(&app, &token, 61, "key-1").await;
    assert_problem(other, 422, "idempotency-key-mismatch").await;
    let keyless = post_as(
        &app,
        &token,
        "/api/v1/wallet/withdrawals",
        None,
        json!({"amount_minor": 1, "currency": "ZAR", "destination": "bank:1"}),
    )
    .await;
    assert_problem(keyless, 400, "invalid-header").await;
    let bad = post_as(
        &app,
        &token,
        "/api/v1/wallet/withdrawals",
        Some("key-2"),
        json!({"amount_minor": 0, "currency": "zar", "destination": ""}),
    )
    .await;
    let problem = assert_problem(bad, 422, "validation-failed").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["amount_minor", "currency"]);
    let no_destination = withdraw_to(&app, &token, "  ").await;
    assert_problem(no_destination, 422, "validation-failed").await;
    let bad_currency = get_as(&app, &token, "/api/v1/wallet/balance?currency=XYZ").await;
    assert_problem(bad_currency, 422, "validation-failed").await;
}

async fn withdraw_to(app: &TestApp, token: &str, destination: &str) -> Response {
    post_as(
        app,
        token,
        "/api/v1/wallet/withdrawals",
        Some(&Uuid::now_v7().to_string()),
        json!({"amount_minor": 1, "currency": "ZAR", "destination": destination}),
    )
    .await
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_settles_deposits_and_pays_out_withdrawals() {
    let (app, stores) = spawn_with_admin(&[("KEEL_REVIO_SIM_DELAY_MS", "50")]).await;
    let admin = admin_token(&app).await;
    let (_, token) = mint_user(&stores, "participant").await;
    deposit(&app, &token, 500).await;
    wait_for("the deposit webhook", async || {
        balance(&app, &token).await == (500, 0, 500)
    })
    .await;

    let placed = withdraw(&app, &token, 200, "payout-1").await;
    assert_eq!(placed.status(), 201);
    let placed: Value = placed.json().await.unwrap();
    let path = format!(
        "/api/v1/wallet/transactions/{}",
        placed["id"].as_str().unwrap()
    );
    wait_for("the payout webhook", async || {
        let op: Value = get_as(&app, &token, &path).await.json().await.unwrap();
        op["status"] == "succeeded"
    })
    .await;
    assert_eq!(balance(&app, &token).await, (300, 0, 300));
    consistent(&app, &admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pages_filters_and_streams_csv() {
    let (app, stores) = spawn_with_admin(QUIET).await;
    let admin = admin_token(&app).await;
    let (user, token) = mint_user(&stores, "participant").await;
    fund(&app, &admin, &user.to_string(), 1_000).await;
    for _ in 0..3 {
        deposit(&app, &token, 100).await;
    }
    for i in 0..2 {
        assert_eq!(
            withdraw(&app, &token, 50, &format!("w-{i}")).await.status(),
            201
        );
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/wallet/transactions?limit=2".to_owned();
    loop {
        let page: Value = get_as(&app, &token, &path).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| {
            (
                i["created_at"].as_str().unwrap().to_owned(),
                i["type"].as_str().unwrap().to_owned(),
            )
        }));
        if seen.len() == 2 {
            // A new operation between pages does not shift the next one.
            deposit(&app, &token, 7).await;
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/wallet/transactions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "adjustment, 3 deposits, 2 withdrawals");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

    let deposits: Value = get_as(
        &app,
        &token,
        "/api/v1/wallet/transactions?type=deposit&status=pending",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(deposits["items"].as_array().unwrap().len(), 4);
    let bad = get_as(&app, &token, "/api/v1/wallet/transactions?type=gift").await;
    assert_problem(bad, 422, "validation-failed").await;
    let bad_cursor = get_as(&app, &token, "/api/v1/wallet/transactions?cursor=nope").await;
    assert_problem(bad_cursor, 422, "validation-failed").await;

    let csv = get_as(
        &app,
        &token,
        "/api/v1/wallet/transactions.csv?type=withdrawal",
    )
    .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "header and two withdrawals: {text}");
    assert!(lines[0].starts_with("id,type,status"));
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",withdrawal,pending,debit,50,ZAR,bank:123,"))
    );

    let (_, stranger) = mint_user(&stores, "participant").await;
    let id = deposits["items"][0]["id"].as_str().unwrap();
    let foreign = get_as(
        &app,
        &stranger,
        &format!("/api/v1/wallet/transactions/{id}"),
    )
    .await;
    assert_problem(foreign, 404, "not-found").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_reverse_once_and_large_adjustments_need_a_second_admin() {
    let mut env = QUIET.to_vec();
    env.retain(|(k, _)| *k != "KEEL_WALLET_APPROVAL_THRESHOLD_MINOR");
    env.push(("KEEL_WALLET_APPROVAL_THRESHOLD_MINOR", "1000"));
    let (app, stores) = spawn_with_admin(&env).await;
    let admin = admin_token(&app).await;
    let (_, checker) = mint_user(&stores, "admin").await;
    let (user, token) = mint_user(&stores, "participant").await;
    let reference = deposit(&app, &token, 800).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, settled) = webhook(&app, "deposit.succeeded", &reference, 800).await;
    assert_eq!(ack(settled).await.0, "processed");
    let op: Value = get_as(
        &app,
        &token,
        &format!("/api/v1/wallet/transactions/{reference}"),
    )
    .await
    .json()
    .await
    .unwrap();
    let transaction = op["transaction_id"]
        .as_str()
        .expect("settled deposits name their transaction")
        .to_owned();
    let detail: Value = get_as(
        &app,
        &admin,
        &format!("/api/v1/admin/ledger/transactions/{transaction}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(detail["kind"], "deposit");
    assert_eq!(detail["postings"].as_array().unwrap().len(), 2);

    let reversal = json!({"transaction_id": transaction, "reason": "chargeback"});
    let by_participant = post_as(
        &app,
        &token,
        "/api/v1/admin/ledger/reversals",
        Some("r-0"),
        reversal.clone(),
    )
    .await;
    assert_problem(by_participant, 403, "forbidden").await;
    let reversed = post_as(
        &app,
        &admin,
        "/api/v1/admin/ledger/reversals",
        Some("r-1"),
        reversal.clone(),
    )
    .await;
    assert_eq!(reversed.status(), 201);
    let twice = post_as(
        &app,
        &admin,
        "/api/v1/admin/ledger/reversals",
        Some("r-2"),
        reversal,
    )
    .await;
    assert_problem(twice, 409, "already-reversed").await;
    assert_eq!(balance(&app, &token).await, (0, 0, 0));

    let large = json!({"user_id": user.to_string(), "amount_minor": 5_000, "currency": "ZAR",
                       "direction": "credit", "reason": "migration"});
    let no_key = post_as(
        &app,
        &admin,
        "/api/v1/admin/ledger/adjustments",
        None,
        large.clone(),
    )
    .await;
    assert_problem(no_key, 400, "invalid-header").await;
    let proposed = post_as(
        &app,
        &admin,
        "/api/v1/admin/ledger/adjustments",
        Some("adj-1"),
        large.clone(),
    )
    .await;
    assert_eq!(proposed.status(), 202);
    // A retry of the same request replays the proposal: one adjustment, not two.
    let retried = post_as(
        &app,
        &admin,
        "/api/v1/admin/ledger/adjustments",
        Some("adj-1"),
        large,
    )
    .await;
    assert_eq!(retried.status(), 202);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    let own_wallet = post_as(
        &app,
        &admin,
        "/api/v1/admin/ledger/adjustments",
        Some("adj-2"),
        json!({"user_id": account_id(&app, &admin).await, "amount_minor": 5, "currency": "ZAR",
               "direction": "credit", "reason": "for me"}),
    )
    .await;
    assert_problem(own_wallet, 403, "forbidden").await;
    let proposed: Value = proposed.json().await.unwrap();
    assert_eq!(proposed["status"], "pending_approval");
    let approve = format!(
        "/api/v1/admin/ledger/adjustments/{}/approve",
        proposed["id"].as_str().unwrap()
    );
    let own = post_as(&app, &admin, &approve, None, json!({})).await;
    assert_problem(own, 403, "second-approver-required").await;
    assert_eq!(balance(&app, &token).await, (0, 0, 0));
    let approved = post_as(&app, &checker, &approve, None, json!({})).await;
    assert_eq!(approved.status(), 200);
    let again = post_as(&app, &checker, &approve, None, json!({})).await;
    assert_problem(again, 409, "adjustment-already-applied").await;
    assert_eq!(balance(&app, &token).await, (5_000, 0, 5_000));

    let audit: Value = get_as(&app, &admin, "/api/v1/admin/audit?limit=50")
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "ledger.reversed",
        "ledger.adjustment_proposed",
        "ledger.adjustment_approved",
    ] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
    consistent(&app, &admin).await;
}

async fn simulate(app: &TestApp, admin: &str, behaviour: Value) {
    let response = app
        .client
        .put(app.url("/api/v1/admin/revio/simulator"))
        .bearer_auth(admin)
        .json(&behaviour)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_payout_is_dead_lettered_and_its_hold_released() {
    let (app, stores) = spawn_with_admin(&[("KEEL_REVIO_SIM_DELAY_MS", "20")]).await;
    let admin = admin_token(&app).await;
    let (user, token) = mint_user(&stores, "participant").await;
    fund(&app, &admin, &user.to_string(), 300).await;
    let participant = app
        .client
        .put(app.url("/api/v1/admin/revio/simulator"))
        .bearer_auth(&token)
        .json(&json!({"calls": "reject"}))
        .send()
        .await
        .unwrap();
    assert_problem(participant, 403, "forbidden").await;
    simulate(&app, &admin, json!({"calls": "reject", "delay_ms": 20})).await;

    let placed: Value = withdraw(&app, &token, 120, "refused-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance(&app, &token).await, (180, 120, 300));
    let path = format!(
        "/api/v1/wallet/transactions/{}",
        placed["id"].as_str().unwrap()
    );
    wait_for("the hold's release", async || {
        let op: Value = get_as(&app, &token, &path).await.json().await.unwrap();
        op["status"] == "failed"
    })
    .await;
    assert_eq!(balance(&app, &token).await, (300, 0, 300));
    let dead: Value = get_as(&app, &admin, "/api/v1/admin/jobs/dead")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        dead["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "wallet.payout"),
        "{dead}"
    );
    consistent(&app, &admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_and_out_of_order_deliveries_from_the_simulator_settle_once() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let admin = admin_token(&app).await;
    let (_, token) = mint_user(&stores, "participant").await;
    simulate(
        &app,
        &admin,
        json!({"duplicate_webhooks": true, "out_of_order": true, "delay_ms": 20}),
    )
    .await;
    let reference = deposit(&app, &token, 400).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deliveries = async || -> Vec<(String, String)> {
        let log: Value = get_as(&app, &admin, "/api/v1/admin/webhooks/revio")
            .await
            .json()
            .await
            .unwrap();
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["outcome"].as_str().unwrap().to_owned(),
                    d["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    wait_for("four deliveries", async || deliveries().await.len() >= 4).await;
    let mut seen = deliveries().await;
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("duplicate".to_owned(), "duplicate-event".to_owned()),
            ("ignored".to_owned(), "out-of-order".to_owned()),
            ("ignored".to_owned(), "out-of-order".to_owned()),
            ("processed".to_owned(), "settled".to_owned()),
        ],
        "the success and its duplicate; the contradicting failure, twice, changes nothing"
    );
    assert_eq!(balance(&app, &token).await, (400, 0, 400));
    let op: Value = get_as(
        &app,
        &token,
        &format!("/api/v1/wallet/transactions/{reference}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(op["status"], "succeeded");
}
