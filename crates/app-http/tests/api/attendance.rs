//! Events over HTTP: exactly-once scans and certificates.

use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use keel_app_http::state::Stores;
use keel_domain::attendance::IssueCertificate;
use keel_domain::jobs::{JobFilter, JobKind, JobState};
use serde_json::{Value, json};

use crate::accounts::{mint_user, spawn_with_admin};
use crate::support::{TestApp, assert_problem};

/// Env of every server here: fast job polling so closed events issue certificates quickly.
const ENV: &[(&str, &str)] = &[("KEEL_JOBS_POLL_INTERVAL_MS", "50")];

/// Longest wait for background work (jobs, event subscribers) on a slow, shared CI machine.
const WAIT: Duration = Duration::from_secs(20);

/// Waits until `count` `certificates.issue` jobs have completed.
async fn wait_for_certificate_jobs(stores: &Stores, count: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let completed = stores
            .jobs
            .list(&JobFilter {
                state: Some(JobState::Completed),
                kind: Some(IssueCertificate::KIND.to_owned()),
                limit: 100,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        if completed.len() >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {count} certificate job(s) completed",
            completed.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(
    app: &TestApp,
    token: Option<&str>,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = match body {
        Some(body) => app.client.post(app.url(path)).json(&body),
        None if path.ends_with("/close") => app.client.post(app.url(path)),
        None => app.client.get(app.url(path)),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    send(app, Some(token), path, Some(body), None).await
}

async fn get(app: &TestApp, token: Option<&str>, path: &str) -> reqwest::Response {
    send(app, token, path, None, None).await
}

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(actual, status, "body: {body}");
    serde_json::from_str(&body).unwrap()
}

/// An event of `token`'s owner running from `starts_in` to `ends_in` seconds from now.
async fn event(app: &TestApp, token: &str, title: &str, starts_in: i64, ends_in: i64) -> String {
    let now = Utc::now();
    let body = json_of(
        post(
            app,
            token,
            "/api/v1/events",
            json!({
                "title": title,
                "starts_at": now + chrono::Duration::seconds(starts_in),
                "ends_at": now + chrono::Duration::seconds(ends_in),
            }),
        )
        .await,
        201,
    )
    .await;
    body["id"].as_str().unwrap().to_owned()
}

/// A participant (id, token) added to `event`.
async fn participant(app: &TestApp, stores: &Stores, token: &str, event: &str) -> (String, String) {
    let (id, user_token) = mint_user(stores, "participant").await;
    let id = id.to_string();
    json_of(
        post(
            app,
            token,
            &format!("/api/v1/events/{event}/participants"),
            json!({"user_id": id}),
        )
        .await,
        201,
    )
    .await;
    (id, user_token)
}

/// `POST /events/{event}/scans` of `participant` by `token`.
async fn scan(app: &TestApp, token: &str, event: &str, participant: &str) -> reqwest::Response {
    post(
        app,
        token,
        &format!("/api/v1/events/{event}/scans"),
        json!({"participant_id": participant}),
    )
    .await
}

/// A scan that must be recorded for the first time (201).
async fn scan_recorded(app: &TestApp, token: &str, event: &str, participant: &str) {
    json_of(scan(app, token, event, participant).await, 201).await;
}

async fn count_rows(app: &TestApp, table: &str) -> Option<i64> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let db = app.db.as_ref()?;
    let mut conn = db.pool().get().await.unwrap();
    let rows: Vec<Count> = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
        .load(&mut conn)
        .await
        .unwrap();
    Some(rows[0].n)
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_scans_record_one_attendance_and_every_repeat_answers_it() {
    let (app, stores) = spawn_with_admin(ENV).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let event = event(&app, &organizer, "Scans", -3600, 3600).await;
    let (participant, _) = participant(&app, &stores, &organizer, &event).await;
    let path = format!("/api/v1/events/{event}/scans");
    let body = json!({"participant_id": participant});

    let responses = join_all((0..20).map(|i| {
        let key = format!("scan-{i}");
        let (app, organizer, path, body) = (&app, &organizer, &path, body.clone());
        async move {
            let response = send(app, Some(organizer), path, Some(body), Some(&key)).await;
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    }))
    .await;
    let created = responses.iter().filter(|(s, _)| *s == 201).count();
    let repeated = responses.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, repeated), (1, 19), "{responses:?}");
    let first = &responses[0].1;
    assert!(
        responses.iter().all(|(_, b)| b == first),
        "identical bodies"
    );
    let record: Value = serde_json::from_str(first).unwrap();
    assert_eq!(record["participant_id"], participant.as_str());
    assert_eq!(record["event_id"], event.as_str());

    // A later repeat with another key, the same key, or none: 200, same body.
    for key in [Some("scan-0"), Some("another-key"), None] {
        let response = send(&app, Some(&organizer), &path, Some(body.clone()), key).await;
        assert_eq!(response.status(), 200);
        assert_eq!(&response.text().await.unwrap(), first);
    }
    // A malformed key is refused before anything happens.
    let bad = send(
        &app,
        Some(&organizer),
        &path,
        Some(body.clone()),
        Some("bad key é"),
    )
    .await;
    assert_eq!(bad.status(), 400);
    if let Some(rows) = count_rows(&app, "attendances").await {
        assert_eq!(rows, 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scans_outside_the_window_or_of_strangers_are_refused() {
    let (app, stores) = spawn_with_admin(ENV).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let later = event(&app, &organizer, "Later", 3600, 7200).await;
    let past = event(&app, &organizer, "Past", -7200, -3600).await;
    let running = event(&app, &organizer, "Now", -60, 3600).await;
    for event in [&later, &past] {
        let (p, _) = participant(&app, &stores, &organizer, event).await;
        let response = scan(&app, &organizer, event, &p).await;
        assert_problem(response, 422, "scan-outside-window").await;
    }
    let (stranger, _) = mint_user(&stores, "participant").await;
    let response = post(
        &app,
        &organizer,
        &format!("/api/v1/events/{running}/scans"),
        json!({"participant_id": stranger.to_string()}),
    )
    .await;
    assert_problem(response, 422, "not-a-participant").await;

    // Closed events take no new scans.
    let (p, _) = participant(&app, &stores, &organizer, &running).await;
    json_of(
        send(
            &app,
            Some(&organizer),
            &format!("/api/v1/events/{running}/close"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    let response = post(
        &app,
        &organizer,
        &format!("/api/v1/events/{running}/scans"),
        json!({"participant_id": p}),
    )
    .await;
    assert_problem(response, 422, "scan-outside-window").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_and_ownership_are_checked() {
    let (app, stores) = spawn_with_admin(ENV).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let (_, other_organizer) = mint_user(&stores, "organizer").await;
    let (_, admin) = mint_user(&stores, "admin").await;
    let (_, nobody) = mint_user(&stores, "participant").await;
    let start = Utc::now();
    let create =
        json!({"title": "x", "starts_at": start, "ends_at": start + chrono::Duration::hours(1)});
    assert_problem(
        post(&app, &nobody, "/api/v1/events", create.clone()).await,
        403,
        "forbidden",
    )
    .await;
    let unauthenticated = app
        .client
        .post(app.url("/api/v1/events"))
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_problem(unauthenticated, 401, "unauthenticated").await;

    let event = event(&app, &organizer, "Owned", -60, 3600).await;
    let (p, p_token) = participant(&app, &stores, &organizer, &event).await;
    let scans = format!("/api/v1/events/{event}/scans");
    let scan = json!({"participant_id": p});
    for token in [&other_organizer, &nobody, &p_token] {
        assert_problem(
            post(&app, token, &scans, scan.clone()).await,
            403,
            "forbidden",
        )
        .await;
        assert_problem(
            post(
                &app,
                token,
                &format!("/api/v1/events/{event}/participants"),
                json!({"user_id": p}),
            )
            .await,
            403,
            "forbidden",
        )
        .await;
    }
    // An admin scans any event.
    json_of(post(&app, &admin, &scans, scan).await, 201).await;
    let certificate = json_of(
        post(
            &app,
            &organizer,
            &format!("/api/v1/events/{event}/certificates"),
            json!({"participant_id": p}),
        )
        .await,
        201,
    )
    .await;
    let id = certificate["id"].as_str().unwrap();
    for token in [&p_token, &organizer, &admin] {
        json_of(
            get(&app, Some(token), &format!("/api/v1/certificates/{id}")).await,
            200,
        )
        .await;
    }
    for token in [&nobody, &other_organizer] {
        assert_problem(
            get(&app, Some(token), &format!("/api/v1/certificates/{id}")).await,
            403,
            "forbidden",
        )
        .await;
        assert_problem(
            get(
                &app,
                Some(token),
                &format!("/api/v1/certificates/{id}/document"),
            )
            .await,
            403,
            "forbidden",
        )
        .await;
    }

    // Validation, unknown and malformed ids.
    let bad = json!({"title": "", "starts_at": start, "ends_at": start});
    let problem = assert_problem(
        post(&app, &organizer, "/api/v1/events", bad).await,
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
    assert_eq!(fields, ["title", "ends_at"]);
    let long = json!({"title": "x".repeat(201), "starts_at": start, "ends_at": start + chrono::Duration::hours(1)});
    assert_problem(
        post(&app, &organizer, "/api/v1/events", long).await,
        422,
        "validation-failed",
    )
    .await;
    assert_problem(
        get(&app, Some(&organizer), "/api/v1/events/not-a-uuid").await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        get(
            &app,
            Some(&organizer),
            &format!("/api/v1/events/{}", uuid::Uuid::new_v4()),
        )
        .await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        get(&app, Some(&organizer), "/api/v1/certificates/42/document").await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        post(
            &app,
            &organizer,
            &format!("/api/v1/events/{event}/participants"),
            json!({"user_id": uuid::Uuid::new_v4()}),
        )
        .await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        post(
            &app,
            &organizer,
            &format!("/api/v1/events/{event}/scans"),
            json!({"participant_id": "nope"}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    let event_view = json_of(
        get(&app, Some(&nobody), &format!("/api/v1/events/{event}")).await,
        200,
    )
    .await;
    assert_eq!(event_view["title"], "Owned");
}

#[tokio::test(flavor = "multi_thread")]
async fn participants_are_added_once() {
    let (app, stores) = spawn_with_admin(ENV).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let event = event(&app, &organizer, "Once", -60, 3600).await;
    let (user, _) = mint_user(&stores, "participant").await;
    let path = format!("/api/v1/events/{event}/participants");
    let body = json!({"user_id": user.to_string()});
    let first = post(&app, &organizer, &path, body.clone()).await;
    assert_eq!(first.status(), 201);
    let first = first.text().await.unwrap();
    let again = post(&app, &organizer, &path, body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), first);
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_automatic_and_repeated_certificates_race_to_one() {
    let (app, stores) = spawn_with_admin(ENV).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let title = "<script>alert('x')</script> & friends";
    let event = event(&app, &organizer, title, -60, 3600).await;
    let (p, p_token) = participant(&app, &stores, &organizer, &event).await;
    let (absent, _) = participant(&app, &stores, &organizer, &event).await;
    scan_recorded(&app, &organizer, &event, &p).await;
    // Not attended: no certificate.
    let response = post(
        &app,
        &organizer,
        &format!("/api/v1/events/{event}/certificates"),
        json!({"participant_id": absent}),
    )
    .await;
    assert_problem(response, 422, "not-attended").await;

    let certificates = format!("/api/v1/events/{event}/certificates");
    let close = format!("/api/v1/events/{event}/close");
    let manual = (0..10).map(|i| {
        let (app, organizer, certificates) = (&app, &organizer, &certificates);
        let p = p.clone();
        async move {
            let key = format!("cert-{}", i % 3);
            let response = send(
                app,
                Some(organizer),
                certificates,
                Some(json!({"participant_id": p})),
                Some(&key),
            )
            .await;
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    });
    let closes = (0..3).map(|_| {
        let (app, organizer, close) = (&app, &organizer, &close);
        async move {
            let response = send(app, Some(organizer), close, None, None).await;
            assert_eq!(response.status(), 200);
        }
    });
    let (manual, _) = futures_util::future::join(join_all(manual), join_all(closes)).await;
    assert!(
        manual.iter().all(|(s, _)| *s == 200 || *s == 201),
        "{manual:?}"
    );
    assert!(manual.iter().filter(|(s, _)| *s == 201).count() <= 1);
    let first = &manual[0].1;
    assert!(manual.iter().all(|(_, b)| b == first), "one certificate");
    let certificate: Value = serde_json::from_str(first).unwrap();
    let id = certificate["id"].as_str().unwrap();

    // Once the close job has run, it found the certificate and issued no second one.
    wait_for_certificate_jobs(&stores, 1).await;
    let again = post(
        &app,
        &organizer,
        &certificates,
        json!({"participant_id": p}),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(&again.text().await.unwrap(), first);
    if let Some(rows) = count_rows(&app, "certificates").await {
        assert_eq!(rows, 1);
    }

    let document = get(
        &app,
        Some(&p_token),
        &format!("/api/v1/certificates/{id}/document"),
    )
    .await;
    assert_eq!(document.status(), 200);
    assert_eq!(
        document.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = document.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script>"), "the title is escaped");
    assert!(html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends"));
    assert!(html.contains("Minted"), "the participant's display name");
    assert!(html.contains(id));
    let code = certificate["verification_code"].as_str().unwrap();
    assert!(html.contains(code));
    assert_eq!(code.len(), 22);

    // Public verification.
    let verified = json_of(
        get(&app, None, &format!("/api/v1/certificates/verify/{code}")).await,
        200,
    )
    .await;
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["certificate_id"], id);
    assert_eq!(verified["event_title"], title);
    assert_eq!(verified["participant_name"], "Minted");
    assert_problem(
        get(
            &app,
            None,
            "/api/v1/certificates/verify/AAAAAAAAAAAAAAAAAAAAAA",
        )
        .await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        get(&app, None, "/api/v1/certificates/verify/short").await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_an_event_issues_every_attendees_certificate() {
    let (app, stores) = spawn_with_admin(ENV).await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    let event = event(&app, &organizer, "Closing", -60, 3600).await;
    let mut attendees = Vec::new();
    for _ in 0..3 {
        let (p, token) = participant(&app, &stores, &organizer, &event).await;
        scan_recorded(&app, &organizer, &event, &p).await;
        attendees.push((p, token));
    }
    let closed = json_of(
        send(
            &app,
            Some(&organizer),
            &format!("/api/v1/events/{event}/close"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(closed["newly_closed"], true);
    assert_eq!(closed["certificate_jobs_enqueued"], 3);
    assert!(closed["event"]["closed_at"].is_string());
    let again = json_of(
        send(
            &app,
            Some(&organizer),
            &format!("/api/v1/events/{event}/close"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(again["newly_closed"], false);
    assert_eq!(again["certificate_jobs_enqueued"], 0);
    assert_eq!(again["event"]["closed_at"], closed["event"]["closed_at"]);

    // The jobs issue the certificates; a manual request afterwards finds each one.
    wait_for_certificate_jobs(&stores, 3).await;
    for (p, token) in &attendees {
        let response = post(
            &app,
            &organizer,
            &format!("/api/v1/events/{event}/certificates"),
            json!({"participant_id": p}),
        )
        .await;
        let certificate = json_of(response, 200).await;
        let id = certificate["id"].as_str().unwrap();
        let document = get(
            &app,
            Some(token),
            &format!("/api/v1/certificates/{id}/document"),
        )
        .await;
        assert_eq!(document.status(), 200);
    }
    if let Some(rows) = count_rows(&app, "certificates").await {
        assert_eq!(rows, 3);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_removes_their_records_and_keeps_the_event() {
    let (app, stores) = spawn_with_admin(ENV).await;
    let (organizer_id, organizer) = mint_user(&stores, "organizer").await;
    let (_, admin) = mint_user(&stores, "admin").await;
    let event = event(&app, &organizer, "Forgetful", -60, 3600).await;
    let (p, _) = participant(&app, &stores, &organizer, &event).await;
    scan_recorded(&app, &organizer, &event, &p).await;
    let certificate = json_of(
        post(
            &app,
            &organizer,
            &format!("/api/v1/events/{event}/certificates"),
            json!({"participant_id": p}),
        )
        .await,
        201,
    )
    .await;
    let code = certificate["verification_code"].as_str().unwrap();
    for user in [p.clone(), organizer_id.to_string()] {
        let deleted = app
            .client
            .delete(app.url(&format!("/api/v1/users/{user}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert!(deleted.status().is_success(), "{}", deleted.status());
    }
    // Memory stores forget through the `UserDeleted` event, Postgres through its foreign keys.
    let deadline = std::time::Instant::now() + WAIT;
    while get(&app, None, &format!("/api/v1/certificates/verify/{code}"))
        .await
        .status()
        != 404
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the certificate outlived its participant"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = json_of(
        get(&app, Some(&admin), &format!("/api/v1/events/{event}")).await,
        200,
    )
    .await;
    assert_eq!(kept["organizer_id"], Value::Null);
}
