//! Scoreboard over HTTP: signed action tokens used once, exact sums under concurrency, the
//! board's order and a deleted account leaving it. On Postgres + Redis when configured.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::accounts::{mint_user, spawn_with_admin};
use crate::support::{TestApp, assert_problem};

pub(crate) async fn post_as(app: &TestApp, token: &str, path: &str, body: Value) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn start(app: &TestApp, token: &str) -> (String, String) {
    let response = post_as(
        app,
        token,
        "/api/v1/actions/start",
        json!({"action_type": "COMPLETE_TASK"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (
        body["action_id"].as_str().unwrap().to_owned(),
        body["action_token"].as_str().unwrap().to_owned(),
    )
}

pub(crate) async fn update(
    app: &TestApp,
    token: &str,
    action_id: &str,
    action_token: &str,
) -> Response {
    post_as(
        app,
        token,
        "/api/v1/score/update",
        json!({"action_id": action_id, "action_token": action_token}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_scores_once_and_only_for_its_owner() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let (me, token) = mint_user(&stores, "participant").await;
    let (_, other) = mint_user(&stores, "participant").await;
    let unknown = post_as(
        &app,
        &token,
        "/api/v1/actions/start",
        json!({"action_type": "CHEAT"}),
    )
    .await;
    assert_problem(unknown, 422, "unknown-action-type").await;

    let (action, action_token) = start(&app, &token).await;
    let foreign = update(&app, &other, &action, &action_token).await;
    assert_problem(foreign, 403, "foreign-action-token").await;
    let truncated = update(
        &app,
        &token,
        &action,
        &action_token[..action_token.len() - 6],
    )
    .await;
    assert_problem(truncated, 401, "invalid-action-token").await;
    let (payload, mac) = action_token.split_once('.').unwrap();
    let mut forged_payload = payload.to_owned();
    forged_payload.replace_range(0..1, if payload.starts_with('A') { "B" } else { "A" });
    let forged = update(&app, &token, &action, &format!("{forged_payload}.{mac}")).await;
    assert_problem(forged, 401, "invalid-action-token").await;
    let garbage = update(&app, &token, &action, "not-a-token").await;
    assert_problem(garbage, 400, "malformed-action-token").await;
    let mismatch = update(&app, &token, &Uuid::now_v7().to_string(), &action_token).await;
    assert_problem(mismatch, 400, "malformed-action-token").await;

    let first = update(&app, &token, &action, &action_token).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        first,
        json!({"new_score": 10, "rank": 1, "score_delta": 10})
    );
    let again = update(&app, &token, &action, &action_token).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "the first response"
    );

    let ranked: Value = app
        .get(&format!("/api/v1/users/{me}/rank"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (ranked["rank"].as_u64(), ranked["score"].as_i64()),
        (Some(1), Some(10))
    );
    assert_eq!(ranked["display_name"], "Minted");
    let nobody = app
        .get(&format!("/api/v1/users/{}/rank", Uuid::now_v7()))
        .await;
    assert_problem(nobody, 404, "not-found").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_actions_of_one_user_sum_exactly_and_the_board_breaks_ties_by_time() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let (racer, token) = mint_user(&stores, "participant").await;
    let mut actions = Vec::new();
    for _ in 0..20 {
        actions.push(start(&app, &token).await);
    }
    let responses = join_all(actions.iter().map(|(id, t)| update(&app, &token, id, t))).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    let ranked: Value = app
        .get(&format!("/api/v1/users/{racer}/rank"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ranked["score"], 200, "twenty actions of 10, none lost");

    // Two users reach 10 in order: the first stays ahead.
    let (first, first_token) = mint_user(&stores, "participant").await;
    let (second, second_token) = mint_user(&stores, "participant").await;
    let (a, at) = start(&app, &first_token).await;
    assert_eq!(update(&app, &first_token, &a, &at).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (b, bt) = start(&app, &second_token).await;
    assert_eq!(update(&app, &second_token, &b, &bt).await.status(), 200);
    let board: Value = app
        .get("/api/v1/scoreboard/top?limit=3")
        .await
        .json()
        .await
        .unwrap();
    let order: Vec<String> = board["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["user_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        vec![racer.to_string(), first.to_string(), second.to_string()]
    );
    assert!(board["last_updated"].is_string());
    for bad in ["0", "101", "x"] {
        let response = app
            .get(&format!("/api/v1/scoreboard/top?limit={bad}"))
            .await;
        assert!(
            response.status() == 400 || response.status() == 422,
            "limit={bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_account_leaves_the_board() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let (user, token) = mint_user(&stores, "participant").await;
    let (action, action_token) = start(&app, &token).await;
    assert_eq!(
        update(&app, &token, &action, &action_token).await.status(),
        200
    );
    let deleted = app
        .client
        .delete(app.url(&format!("/api/v1/users/{user}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let start_wait = Instant::now();
    loop {
        let response = app.get(&format!("/api/v1/users/{user}/rank")).await;
        if response.status() == 404 {
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "still on the board"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_updates_of_many_users_with_repeats_each_score_once() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let mut players = Vec::new();
    for _ in 0..5 {
        players.push(mint_user(&stores, "participant").await);
    }
    let mut requests = Vec::new();
    for (_, token) in &players {
        for _ in 0..4 {
            let (id, action_token) = start(&app, token).await;
            // Each action is sent twice at once: one scores, the other replays it.
            requests.push((token.clone(), id.clone(), action_token.clone()));
            requests.push((token.clone(), id, action_token));
        }
    }
    let responses = join_all(
        requests
            .iter()
            .map(|(token, id, action_token)| update(&app, token, id, action_token)),
    )
    .await;
    let mut replays = 0;
    for response in responses {
        assert_eq!(response.status(), 200);
        if response.headers().get("idempotent-replayed").is_some() {
            replays += 1;
        }
    }
    assert_eq!(replays, 20, "one of each pair replays");
    for (user, _) in &players {
        let ranked: Value = app
            .get(&format!("/api/v1/users/{user}/rank"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            ranked["score"], 40,
            "four actions of 10, none lost or doubled"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_account_cannot_score_with_a_token_it_still_holds() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let (user, token) = mint_user(&stores, "participant").await;
    let (action, action_token) = start(&app, &token).await;
    let deleted = app
        .client
        .delete(app.url(&format!("/api/v1/users/{user}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    // Refused at the door (the account of a state-changing request must exist); the store's own
    // check in the scoring statement, for a deletion racing the request, is in its contract.
    let refused = update(&app, &token, &action, &action_token).await;
    assert_problem(refused, 401, "invalid-token").await;
}
