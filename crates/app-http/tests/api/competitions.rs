//! Competitions over HTTP: registrations that never oversell, on memory and on Postgres.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::join_all;
use keel_adapters_postgres::PgJobQueue;
use keel_app_http::state::Stores;
use keel_domain::competitions::SendReminder;
use keel_domain::jobs::{JobFilter, JobKind};
use reqwest::Response;
use serde_json::{Value, json};

use crate::accounts::{get_as, mint_user, spawn_with_admin};
use crate::support::{TestApp, assert_problem, no_routes, spawn_on_services, spawn_second_node};

/// Tests that need no mail delivered run without job workers: less work on shared CI cores, and
/// no `mail.send` attempts in the process-wide metrics other tests read.
const NO_WORKERS: &[(&str, &str)] = &[("KEEL_WORKERS", "0")];

/// Longest wait for background work (jobs, event subscribers) on a slow, shared CI machine.
const WAIT: Duration = Duration::from_secs(20);

const RACERS: usize = 200;
const SEATS: u64 = 50;

fn at(offset: chrono::Duration) -> String {
    (Utc::now() + offset).to_rfc3339()
}

async fn create_raw(app: &TestApp, token: &str, body: Value) -> Response {
    app.client
        .post(app.url("/api/v1/competitions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A competition with `capacity` seats, registration open for `open`, starting `starts` from now.
async fn create(
    app: &TestApp,
    token: &str,
    capacity: u64,
    open: chrono::Duration,
    starts: chrono::Duration,
) -> String {
    let response = create_raw(
        app,
        token,
        json!({"title": "Spring open", "capacity": capacity,
               "registration_deadline": at(open), "starts_at": at(starts)}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["seats_left"], capacity);
    body["id"].as_str().unwrap().to_owned()
}

async fn register(app: &TestApp, token: &str, id: &str, key: Option<&str>) -> Response {
    let mut request = app
        .client
        .post(app.url(&format!("/api/v1/competitions/{id}/registrations")))
        .bearer_auth(token);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn withdraw(app: &TestApp, token: &str, id: &str) -> Response {
    app.client
        .delete(app.url(&format!("/api/v1/competitions/{id}/registrations/me")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn seats_left(app: &TestApp, id: &str) -> u64 {
    let body: Value = app
        .get(&format!("/api/v1/competitions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    body["seats_left"].as_u64().unwrap()
}

async fn mailbox(app: &TestApp, token: &str) -> Vec<Value> {
    let page: Value = get_as(app, token, "/api/v1/mailbox")
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

async fn wait_for_mail(app: &TestApp, token: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let items = mailbox(app, token).await;
        if items.len() >= count {
            return items;
        }
        assert!(Instant::now() < deadline, "mail never arrived: {items:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no `mail.send` or reminder job is available or running.
async fn wait_for_mail_jobs_to_settle(stores: &Stores) {
    use keel_domain::jobs::JobState;
    use keel_domain::mail::SendMail;

    let deadline = Instant::now() + WAIT;
    loop {
        let mut pending = 0;
        for kind in [SendMail::KIND, SendReminder::KIND] {
            for state in [JobState::Available, JobState::Running] {
                pending += stores
                    .jobs
                    .list(&JobFilter {
                        state: Some(state),
                        kind: Some(kind.to_owned()),
                        limit: 1000,
                        ..JobFilter::default()
                    })
                    .await
                    .unwrap()
                    .len();
            }
        }
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pending} mail job(s) never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn organizers_create_competitions_that_anyone_reads_and_lists() {
    let (app, stores) = spawn_with_admin(NO_WORKERS).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let (_, participant) = mint_user(&stores, "participant").await;
    let (hour, day) = (chrono::Duration::hours(1), chrono::Duration::days(1));

    let valid = json!({"title": "Cup", "capacity": 3,
                       "registration_deadline": at(hour), "starts_at": at(day)});
    assert_problem(
        create_raw(&app, &participant, valid).await,
        403,
        "forbidden",
    )
    .await;
    let invalid = json!({"title": " ", "capacity": 0,
                         "registration_deadline": at(day), "starts_at": at(hour)});
    let problem = assert_problem(
        create_raw(&app, &organizer, invalid).await,
        422,
        "validation-failed",
    )
    .await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["title", "capacity", "registration_deadline"]);
    let huge = json!({"title": "Cup", "capacity": 1_000_001,
                      "registration_deadline": at(hour), "starts_at": at(day)});
    assert_problem(
        create_raw(&app, &organizer, huge).await,
        422,
        "validation-failed",
    )
    .await;

    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&app, &organizer, 3, hour, day).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let one: Value = app
        .get(&format!("/api/v1/competitions/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (one["capacity"].as_u64(), one["seats_left"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(one["title"], "Spring open");

    let first: Value = app
        .get("/api/v1/competitions?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let page: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get(&format!("/api/v1/competitions?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"][0]["id"], ids[0].as_str());
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_problem(
        app.get("/api/v1/competitions?cursor=garbage").await,
        422,
        "validation-failed",
    )
    .await;

    // Malformed and unknown ids are problems, never 500.
    let malformed = app.get("/api/v1/competitions/not-a-uuid").await;
    let status = malformed.status().as_u16();
    assert!(status == 400 || status == 404, "status {status}");
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );
    let unknown = format!("/api/v1/competitions/{}", uuid::Uuid::new_v4());
    assert_problem(app.get(&unknown).await, 404, "not-found").await;
    let ghost = uuid::Uuid::new_v4().to_string();
    assert_problem(
        register(&app, &participant, &ghost, None).await,
        404,
        "not-found",
    )
    .await;
    let response = register(&app, &participant, "0", None).await;
    assert!(matches!(response.status().as_u16(), 400 | 404));
}

#[tokio::test]
async fn seats_fill_duplicates_replay_and_withdrawals_free_seats() {
    let (app, stores) = spawn_with_admin(NO_WORKERS).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let (a_id, a) = mint_user(&stores, "participant").await;
    let (_, b) = mint_user(&stores, "participant").await;
    let id = create(
        &app,
        &organizer,
        1,
        chrono::Duration::hours(1),
        chrono::Duration::days(2),
    )
    .await;

    let first = register(&app, &a, &id, Some("seat-key-1")).await;
    assert_eq!(first.status(), 201);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["seats_left"], 0);
    assert_eq!(body["competition_id"], id.as_str());
    assert_eq!(body["user_id"], a_id.to_string());
    assert!(body["id"].as_str().is_some() && body["registered_at"].as_str().is_some());

    // A retry with the same key replays the first answer; without it the natural key refuses.
    let replay = register(&app, &a, &id, Some("seat-key-1")).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), body);
    assert_problem(
        register(&app, &a, &id, None).await,
        409,
        "already-registered",
    )
    .await;
    assert_problem(
        register(&app, &a, &id, Some("seat-key-2")).await,
        409,
        "already-registered",
    )
    .await;
    assert_problem(register(&app, &b, &id, None).await, 409, "competition-full").await;
    assert_eq!(seats_left(&app, &id).await, 0);

    assert_eq!(withdraw(&app, &a, &id).await.status(), 204);
    assert_eq!(seats_left(&app, &id).await, 1);
    assert_problem(withdraw(&app, &a, &id).await, 404, "not-found").await;
    let taken = register(&app, &b, &id, None).await;
    assert_eq!(
        taken.status(),
        201,
        "the freed seat is taken by another user"
    );
    assert_problem(register(&app, &a, &id, None).await, 409, "competition-full").await;
    let anonymous = app
        .client
        .post(app.url(&format!("/api/v1/competitions/{id}/registrations")))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "unauthenticated").await;
}

#[tokio::test]
async fn the_deadline_closes_registrations_and_withdrawals() {
    let (app, stores) = spawn_with_admin(NO_WORKERS).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let (_, user) = mint_user(&stores, "participant").await;
    let closed = create(
        &app,
        &organizer,
        5,
        chrono::Duration::hours(-1),
        chrono::Duration::hours(1),
    )
    .await;
    assert_problem(
        register(&app, &user, &closed, None).await,
        422,
        "registration-closed",
    )
    .await;
    assert_problem(
        withdraw(&app, &user, &closed).await,
        422,
        "registration-closed",
    )
    .await;

    // Open for 3 s: wide enough that a slow CI machine still registers in time.
    let closing = create(
        &app,
        &organizer,
        5,
        chrono::Duration::seconds(3),
        chrono::Duration::hours(1),
    )
    .await;
    assert_eq!(register(&app, &user, &closing, None).await.status(), 201);
    // Wait until the server's own deadline has passed (not a guessed duration).
    let body: Value = app
        .get(&format!("/api/v1/competitions/{closing}"))
        .await
        .json()
        .await
        .unwrap();
    let deadline: chrono::DateTime<Utc> = body["registration_deadline"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    while Utc::now() <= deadline + chrono::Duration::milliseconds(50) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_problem(
        withdraw(&app, &user, &closing).await,
        422,
        "registration-closed",
    )
    .await;
    assert_eq!(seats_left(&app, &closing).await, 4);
}

/// Fires `RACERS` registrations at once (alternating between `nodes`) for `SEATS` seats.
async fn race(nodes: &[&TestApp], stores: &Stores) {
    let (_, organizer) = mint_user(stores, "organizer").await;
    let id = create(
        nodes[0],
        &organizer,
        SEATS,
        chrono::Duration::hours(1),
        chrono::Duration::days(2),
    )
    .await;
    let users = join_all((0..RACERS).map(|_| mint_user(stores, "participant"))).await;
    let responses = join_all(
        users
            .iter()
            .enumerate()
            .map(|(n, (_, token))| register(nodes[n % nodes.len()], token, &id, None)),
    )
    .await;
    let mut created = 0;
    let mut full = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => created += 1,
            409 => {
                let body: Value = response.json().await.unwrap();
                assert!(
                    body["type"]
                        .as_str()
                        .unwrap()
                        .ends_with("/competition-full")
                );
                full += 1;
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    assert_eq!((created, full), (SEATS, RACERS as u64 - SEATS));
    for node in nodes {
        assert_eq!(seats_left(node, &id).await, 0);
    }
    let rows = stores
        .products
        .competitions
        .store
        .registration_count(keel_domain::competitions::CompetitionId(
            id.parse().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(rows, SEATS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_racers_take_exactly_fifty_seats() {
    let (app, stores) = spawn_with_admin(NO_WORKERS).await;
    race(&[&app], &stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_never_oversell() {
    let Some(first) = spawn_on_services(NO_WORKERS, no_routes()).await else {
        return;
    };
    let second = spawn_second_node(&first, NO_WORKERS, no_routes()).await;
    let pool = first.db.as_ref().unwrap().pool().clone();
    let stores = Stores::postgres(pool.clone(), PgJobQueue::new(pool));
    race(&[&first, &second], &stores).await;
}

#[tokio::test]
async fn confirmations_and_reminders_arrive_but_never_for_withdrawn_seats() {
    let (app, stores) = spawn_with_admin(&[]).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let (_, soon_user) = mint_user(&stores, "participant").await;
    let (_, leaver) = mint_user(&stores, "participant").await;
    // Starts within 24 h: the reminder is due at once.
    let soon = create(
        &app,
        &organizer,
        5,
        chrono::Duration::hours(1),
        chrono::Duration::hours(3),
    )
    .await;
    assert_eq!(register(&app, &soon_user, &soon, None).await.status(), 201);
    let mails = wait_for_mail(&app, &soon_user, 2).await;
    let subjects: Vec<&str> = mails
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.iter().any(|s| s.starts_with("You are registered")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.starts_with("Reminder")),
        "{subjects:?}"
    );
    // The mail jobs name the account, never its address (personal data outside sealed columns).
    for kind in [keel_domain::mail::SendMail::KIND, SendReminder::KIND] {
        let jobs = stores
            .jobs
            .list(&JobFilter {
                kind: Some(kind.to_owned()),
                limit: 1000,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        assert!(!jobs.is_empty(), "{kind} jobs were enqueued");
        for job in jobs {
            assert!(
                !job.payload.to_string().contains('@'),
                "{kind} payload holds an address: {}",
                job.payload
            );
        }
    }
    assert!(
        !Value::Array(mails).to_string().contains('@'),
        "the mailbox keeps no address"
    );

    // Starts in three days: the reminder waits two days, and withdrawing cancels it.
    let later = create(
        &app,
        &organizer,
        5,
        chrono::Duration::hours(1),
        chrono::Duration::days(3),
    )
    .await;
    let response = register(&app, &leaver, &later, None).await;
    let registration: Value = response.json().await.unwrap();
    let key = registration["id"].as_str().unwrap().to_owned();
    let reminders = || async {
        stores
            .jobs
            .list(&JobFilter {
                kind: Some(SendReminder::KIND.to_owned()),
                limit: 1000,
                ..JobFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.unique_key.as_deref() == Some(key.as_str()))
            .count()
    };
    assert_eq!(
        reminders().await,
        1,
        "reminder scheduled with the registration"
    );
    assert_eq!(withdraw(&app, &leaver, &later).await.status(), 204);
    assert_eq!(
        reminders().await,
        0,
        "reminder cancelled with the withdrawal"
    );
    let mails = wait_for_mail(&app, &leaver, 1).await;
    // Every mail job has run (none is waiting or running): the mailbox is final.
    wait_for_mail_jobs_to_settle(&stores).await;
    let mails_after = mailbox(&app, &leaver).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails_after.len(),
        1,
        "only the confirmation: {mails_after:?}"
    );
}

#[tokio::test]
async fn deleting_a_user_frees_their_seats() {
    let (app, stores) = spawn_with_admin(NO_WORKERS).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let (gone_id, gone) = mint_user(&stores, "participant").await;
    let (_, next) = mint_user(&stores, "participant").await;
    let id = create(
        &app,
        &organizer,
        1,
        chrono::Duration::hours(1),
        chrono::Duration::days(2),
    )
    .await;
    assert_eq!(register(&app, &gone, &id, None).await.status(), 201);
    assert_problem(
        register(&app, &next, &id, None).await,
        409,
        "competition-full",
    )
    .await;
    // Some mail in the account's mailbox, to be forgotten with it.
    let mail = keel_domain::mail::Mail {
        id: uuid::Uuid::now_v7(),
        user_id: gone_id.as_uuid(),
        subject: "Hello".into(),
        body: "Personal data".into(),
    };
    let to = keel_domain::identity::values::Email::parse("gone@minted.test").unwrap();
    stores
        .mail_sender
        .send(&mail, &to, Utc::now())
        .await
        .unwrap();
    let listed = stores.mailbox.list(gone_id, None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let deleted = app
        .client
        .delete(app.url(&format!("/api/v1/users/{gone_id}")))
        .bearer_auth(&gone)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let left = stores.mailbox.list(gone_id, None, 10).await.unwrap();
    assert!(
        left.is_empty(),
        "the deleted account's mail is gone: {left:?}"
    );
    let deadline = Instant::now() + WAIT;
    while seats_left(&app, &id).await == 0 {
        assert!(Instant::now() < deadline, "the seat was never freed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(register(&app, &next, &id, None).await.status(), 201);
}
