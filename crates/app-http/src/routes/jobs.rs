//! `/admin/jobs`: the job queue and its dead letters, for admins (audited changes).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use keel_domain::jobs::{Job, JobChange, JobFilter, JobId, JobState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::audit::{self, Change};
use crate::http::auth::AdminCaller;
use crate::http::page::{self, TimeCursor};
use crate::http::{ApiError, FieldError, ProblemType, RequestId};
use crate::state::AppState;

/// Registers the admin job routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin/jobs").get(list_jobs))
        .service(web::resource("/admin/jobs/dead").get(list_dead_jobs))
        .service(web::resource("/admin/jobs/{id}/retry").post(retry_job))
        .service(web::resource("/admin/jobs/{id}").delete(delete_job));
}

/// Filters of `GET /admin/jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// `available`, `running`, `completed` or `dead`.
    pub state: Option<String>,
    /// A kind name, e.g. `mail.send`.
    pub kind: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// One failed attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptErrorView {
    /// Attempt number.
    pub attempt: u32,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// Why.
    pub error: String,
}

/// A job as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: Uuid,
    /// Kind name.
    pub kind: String,
    /// `available`, `running`, `completed` or `dead`.
    pub state: String,
    /// Attempts started.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Higher runs first.
    pub priority: i16,
    /// Earliest (next) start.
    pub run_at: DateTime<Utc>,
    /// Uniqueness key, if any.
    pub unique_key: Option<String>,
    /// The payload.
    pub payload: serde_json::Value,
    /// Failed attempts, oldest first.
    pub errors: Vec<AttemptErrorView>,
    /// Enqueued at.
    pub created_at: DateTime<Utc>,
    /// Last attempt started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Completed or died at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Worker holding it, while running.
    pub locked_by: Option<String>,
    /// Lease end, while running.
    pub locked_until: Option<DateTime<Utc>>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        Self {
            id: job.id.0,
            kind: job.kind,
            state: job.state.as_str().to_owned(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            priority: job.priority,
            run_at: job.run_at,
            unique_key: job.unique_key,
            payload: job.payload,
            errors: job
                .errors
                .into_iter()
                .map(|e| AttemptErrorView {
                    attempt: e.attempt,
                    at: e.at,
                    error: e.error,
                })
                .collect(),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            locked_by: job.locked_by,
            locked_until: job.locked_until,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub items: Vec<JobView>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

async fn list(
    state: &AppState,
    query: JobsQuery,
    forced_state: Option<JobState>,
) -> Result<HttpResponse, ApiError> {
    let limit = page::limit(query.limit)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(TimeCursor::decode)
        .transpose()?;
    let job_state = match (forced_state, query.state.as_deref()) {
        (Some(forced), _) => Some(forced),
        (None, None) => None,
        (None, Some(raw)) => Some(JobState::parse(raw).ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(
                "state",
                "must be available, running, completed or dead",
            )])
        })?),
    };
    let filter = JobFilter {
        state: job_state,
        kind: query.kind,
        before: cursor.map(|c| (c.at, JobId(c.id))),
        limit: limit + 1,
    };
    let mut jobs = state.stores.jobs.list(&filter).await?;
    let next_cursor = page::next_cursor(&mut jobs, limit, |j| TimeCursor {
        at: j.created_at,
        id: j.id.0,
    });
    let items = jobs.into_iter().map(JobView::from).collect();
    Ok(HttpResponse::Ok().json(JobList { items, next_cursor }))
}

/// Lists jobs, newest first, by state and kind (admin only).
#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "jobs", params(JobsQuery),
    responses((status = 200, body = JobList), (status = 403, description = "forbidden")))]
pub async fn list_jobs(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, ApiError> {
    list(&state, query.into_inner(), None).await
}

/// Lists the dead-letter set: jobs that failed every attempt (admin only).
#[utoipa::path(get, path = "/api/v1/admin/jobs/dead", tag = "jobs", params(JobsQuery),
    responses((status = 200, body = JobList), (status = 403, description = "forbidden")))]
pub async fn list_dead_jobs(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, ApiError> {
    list(&state, query.into_inner(), Some(JobState::Dead)).await
}

fn changed(change: JobChange, action: &str) -> Result<Job, ApiError> {
    match change {
        JobChange::Changed(job) => Ok(*job),
        JobChange::NotFound => Err(ApiError::problem(ProblemType::NOT_FOUND, "no such job")),
        JobChange::NotAllowed(state) => Err(ApiError::problem(
            ProblemType::JOB_STATE_CONFLICT,
            format!("a {} job cannot be {action}", state.as_str()),
        )),
    }
}

async fn audit(
    state: &AppState,
    caller: &AdminCaller,
    request_id: &RequestId,
    action: &str,
    job: &Job,
    before: serde_json::Value,
    after: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    let change = Change {
        action,
        subject: format!("job:{}", job.id),
        before: Some(before),
        after,
        reason: None,
    };
    audit::record(state, caller.0.id(), request_id, change).await
}

/// Runs a dead or waiting job again now; a dead job gets a fresh attempt budget (admin only,
/// audited).
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 403, description = "forbidden"),
        (status = 404, description = "not-found"), (status = 409, description = "job-state-conflict")))]
pub async fn retry_job(
    state: web::Data<AppState>,
    caller: AdminCaller,
    request_id: RequestId,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = JobId(path.into_inner());
    let before = state.stores.jobs.get(id).await?;
    let job = changed(
        state.stores.jobs.retry(id, state.clock.now()).await?,
        "retried",
    )?;
    let before = before.map_or(
        serde_json::Value::Null,
        |b| serde_json::json!({"state": b.state.as_str(), "attempt": b.attempt}),
    );
    let after = serde_json::json!({"state": job.state.as_str(), "attempt": job.attempt});
    audit(
        &state,
        &caller,
        &request_id,
        "job.retried",
        &job,
        before,
        Some(after),
    )
    .await?;
    Ok(HttpResponse::Ok().json(JobView::from(job)))
}

/// Discards a job that is not running (admin only, audited).
#[utoipa::path(delete, path = "/api/v1/admin/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 204), (status = 403, description = "forbidden"),
        (status = 404, description = "not-found"), (status = 409, description = "job-state-conflict")))]
pub async fn delete_job(
    state: web::Data<AppState>,
    caller: AdminCaller,
    request_id: RequestId,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let job = changed(
        state.stores.jobs.delete(JobId(path.into_inner())).await?,
        "deleted",
    )?;
    let before = serde_json::json!({
        "kind": job.kind, "state": job.state.as_str(), "attempt": job.attempt,
    });
    audit(
        &state,
        &caller,
        &request_id,
        "job.deleted",
        &job,
        before,
        None,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
