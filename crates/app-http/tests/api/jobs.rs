//! The job queue over HTTP: admin routes (list, dead letters, retry, delete; audited), the
//! mailbox fed by `mail.send` jobs, queue metrics, and `keel worker`.

use std::time::{Duration, Instant};

use chrono::Utc;
use keel_app_http::state::Stores;
use keel_domain::jobs::{
    AfterFailure, AttemptError, ClaimRequest, ClaimedJob, JobId, JobKind, NewJob,
};
use keel_domain::mail::{Mail, SendMail};
use serde_json::Value;
use uuid::Uuid;

use crate::accounts::{ADMIN_EMAIL, ADMIN_PASSWORD, account, get_as, spawn_with_admin, tokens};
use crate::support::{TestApp, assert_problem, metric};

/// A kind no keel node registers: its jobs wait untouched by the workers.
const IDLE_KIND: &str = "test.idle";

fn idle_job() -> NewJob {
    NewJob {
        kind: IDLE_KIND.into(),
        payload: serde_json::json!({"n": 1}),
        priority: 0,
        max_attempts: 1,
        run_at: Utc::now(),
        unique_key: None,
    }
}

async fn enqueue_idle(stores: &Stores) -> JobId {
    stores
        .jobs
        .enqueue(idle_job(), Utc::now())
        .await
        .unwrap()
        .id()
}

/// Claims the one waiting idle job, as a worker would.
async fn claim_idle(stores: &Stores) -> ClaimedJob {
    let request = ClaimRequest {
        kinds: vec![IDLE_KIND.into()],
        worker: "test".into(),
        now: Utc::now(),
        lease: Duration::from_secs(60),
        limit: 1,
    };
    stores.jobs.claim(&request).await.unwrap().remove(0)
}

async fn admin_token(app: &TestApp) -> String {
    tokens(app, ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn send_as(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn admins_list_retry_and_delete_jobs_and_every_change_is_audited() {
    let (app, stores) = spawn_with_admin(&[]).await;
    let admin = admin_token(&app).await;
    let (_, participant) = account(&app, &admin, "pat@example.com", "participant").await;

    // A job that died: claimed and failed for good.
    let id = enqueue_idle(&stores).await;
    let claimed = claim_idle(&stores).await;
    let error = AttemptError {
        attempt: 1,
        at: Utc::now(),
        error: "provider said no".into(),
    };
    stores
        .jobs
        .fail(&claimed, error, AfterFailure::Dead(Utc::now()))
        .await
        .unwrap();

    for path in ["/api/v1/admin/jobs", "/api/v1/admin/jobs/dead"] {
        assert_problem(get_as(&app, &participant, path).await, 403, "forbidden").await;
    }
    let retry_path = format!("/api/v1/admin/jobs/{id}/retry");
    let post = reqwest::Method::POST;
    assert_problem(
        send_as(&app, &participant, post.clone(), &retry_path).await,
        403,
        "forbidden",
    )
    .await;

    let dead: Value = get_as(&app, &admin, "/api/v1/admin/jobs/dead")
        .await
        .json()
        .await
        .unwrap();
    let listed = &dead["items"][0];
    assert_eq!(listed["id"], id.to_string());
    assert_eq!(listed["state"], "dead");
    assert_eq!(listed["errors"][0]["error"], "provider said no");
    let bad_state = get_as(&app, &admin, "/api/v1/admin/jobs?state=sleeping").await;
    assert_eq!(
        assert_problem(bad_state, 422, "validation-failed").await["errors"][0]["field"],
        "state"
    );

    let retried = send_as(&app, &admin, post.clone(), &retry_path).await;
    assert_eq!(retried.status(), 200);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(
        (retried["state"].as_str(), retried["attempt"].as_u64()),
        (Some("available"), Some(0))
    );
    assert_eq!(
        retried["errors"].as_array().unwrap().len(),
        1,
        "history kept"
    );

    // Running jobs can be neither retried nor deleted.
    let running = claim_idle(&stores).await;
    assert_eq!(running.job.id, id);
    assert_problem(
        send_as(&app, &admin, post.clone(), &retry_path).await,
        409,
        "job-state-conflict",
    )
    .await;
    let job_path = format!("/api/v1/admin/jobs/{id}");
    let delete = reqwest::Method::DELETE;
    assert_problem(
        send_as(&app, &admin, delete.clone(), &job_path).await,
        409,
        "job-state-conflict",
    )
    .await;
    stores.jobs.release(&running).await.unwrap();

    assert_eq!(
        send_as(&app, &admin, delete.clone(), &job_path)
            .await
            .status(),
        204
    );
    assert!(stores.jobs.get(id).await.unwrap().is_none());
    assert_problem(
        send_as(&app, &admin, delete.clone(), &job_path).await,
        404,
        "not-found",
    )
    .await;
    let unknown = format!("/api/v1/admin/jobs/{}/retry", Uuid::new_v4());
    assert_problem(
        send_as(&app, &admin, post.clone(), &unknown).await,
        404,
        "not-found",
    )
    .await;
    let malformed = send_as(&app, &admin, post, "/api/v1/admin/jobs/not-a-uuid/retry").await;
    assert!(
        matches!(malformed.status().as_u16(), 400 | 404),
        "{}",
        malformed.status()
    );

    for action in ["job.retried", "job.deleted"] {
        let page: Value = get_as(
            &app,
            &admin,
            &format!("/api/v1/admin/audit?action={action}"),
        )
        .await
        .json()
        .await
        .unwrap();
        let entry = &page["items"][0];
        assert_eq!(entry["subject"], format!("job:{id}"), "{action}: {page}");
        assert!(entry["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    }
}

#[tokio::test]
async fn job_lists_filter_and_page() {
    let (app, stores) = spawn_with_admin(&[]).await;
    let admin = admin_token(&app).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(enqueue_idle(&stores).await.to_string());
        // Distinct creation times make the newest-first order exact.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let path = format!("/api/v1/admin/jobs?kind={IDLE_KIND}&state=available&limit=2");
    let first: Value = get_as(&app, &admin, &path).await.json().await.unwrap();
    let page_ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(page_ids(&first), [ids[2].clone(), ids[1].clone()]);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second: Value = get_as(&app, &admin, &format!("{path}&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page_ids(&second), [ids[0].clone()]);
    assert!(second["next_cursor"].is_null());
    let bad = get_as(&app, &admin, &format!("{path}&cursor=nonsense")).await;
    assert_problem(bad, 422, "validation-failed").await;
    let none: Value = get_as(&app, &admin, "/api/v1/admin/jobs?kind=no.such.kind")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], serde_json::json!([]));
}

async fn wait_for_mail(app: &TestApp, token: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page: Value = get_as(app, token, "/api/v1/mailbox")
            .await
            .json()
            .await
            .unwrap();
        if page["items"]
            .as_array()
            .is_some_and(|items| items.len() >= count)
        {
            return page;
        }
        assert!(Instant::now() < deadline, "mail never arrived: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mail_jobs_are_delivered_once_to_the_recipients_mailbox() {
    let (app, stores) = spawn_with_admin(&[]).await;
    let admin = admin_token(&app).await;
    let (user_id, token) = account(&app, &admin, "mail@example.com", "participant").await;
    let (_, other) = account(&app, &admin, "other@example.com", "participant").await;
    let user_id: Uuid = user_id.parse().unwrap();
    let completed_before = metric(&app, COMPLETED_MAILS).await;
    let mut mail_ids = Vec::new();
    for n in 0..3 {
        let mail = Mail {
            id: Uuid::now_v7(),
            user_id,
            subject: format!("Welcome {n}"),
            body: "You are registered.".into(),
        };
        mail_ids.push(mail.id.to_string());
        let job = SendMail(mail).to_new_job(Utc::now()).unwrap();
        stores.jobs.enqueue(job.clone(), Utc::now()).await.unwrap();
        // The same mail enqueued again is the same job (uniqueness key = mail id).
        stores.jobs.enqueue(job, Utc::now()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let page = wait_for_mail(&app, &token, 3).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "each mail delivered once: {page}");
    assert!(
        !page.to_string().contains("@"),
        "no address is kept: {page}"
    );
    assert!(items[0]["subject"].as_str().unwrap().starts_with("Welcome"));
    assert!(items[0]["sent_at"].as_str().is_some());

    let first: Value = get_as(&app, &token, "/api/v1/mailbox?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().expect("more mail");
    let rest: Value = get_as(
        &app,
        &token,
        &format!("/api/v1/mailbox?limit=2&cursor={cursor}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());

    let others: Value = get_as(&app, &other, "/api/v1/mailbox")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(others["items"], serde_json::json!([]), "mail is private");
    let anonymous = app.get("/api/v1/mailbox").await;
    assert_problem(anonymous, 401, "unauthenticated").await;

    // Metrics are process-wide and other tests send mail too: compare with the count before.
    let completed = metric(&app, COMPLETED_MAILS).await;
    assert!(
        completed >= completed_before + 3.0,
        "{completed_before} → {completed}"
    );
    let waits = r#"keel_job_wait_seconds_count{kind="mail.send"}"#;
    assert!(metric(&app, waits).await >= 3.0);
}

const COMPLETED_MAILS: &str = r#"keel_job_attempts_total{kind="mail.send",outcome="completed"}"#;

#[tokio::test]
async fn with_no_workers_jobs_wait() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let admin = admin_token(&app).await;
    let (user_id, _) = account(&app, &admin, "wait@example.com", "participant").await;
    let mail = Mail {
        id: Uuid::now_v7(),
        user_id: user_id.parse().unwrap(),
        subject: "Hi".into(),
        body: "…".into(),
    };
    let id = stores
        .jobs
        .enqueue(SendMail(mail).to_new_job(Utc::now()).unwrap(), Utc::now())
        .await
        .unwrap()
        .id();
    // Several poll intervals with no worker: the job is still waiting.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let job = stores.jobs.get(id).await.unwrap().unwrap();
    assert_eq!(job.state, keel_domain::jobs::JobState::Available);
    assert_eq!(job.attempt, 0);
}
