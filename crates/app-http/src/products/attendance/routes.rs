//! `/events/…` and `/certificates/…`: thin handlers over [`AttendanceService`].

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use keel_domain::attendance::{
    Actor, Attendance, AttendanceError, Certificate, CertificateId, CloseOutcome, Event, EventId,
    NewEvent, Participant, Recorded,
};
use keel_domain::idempotency::IdempotencyKey;
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Role;
use keel_domain::ratelimit::LimitClass;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::service;
use crate::http::auth::Authenticated;
use crate::http::principal::Principal;
use crate::http::rate_limit::rate_limit;
use crate::http::{ApiError, FieldError, ProblemType};
use crate::state::AppState;

/// Registers the events and certificates routes (scans in rate class `scan`).
/// Each top-level path is one scope, so other routes never try these patterns.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/events")
            .service(web::resource("").post(create_event))
            .service(web::resource("/{id}").get(get_event))
            .service(web::resource("/{id}/participants").post(add_participant))
            .service(
                web::resource("/{id}/scans")
                    .wrap(from_fn(rate_limit(LimitClass::Scan)))
                    .post(scan),
            )
            .service(web::resource("/{id}/certificates").post(issue_certificate))
            .service(web::resource("/{id}/close").post(close_event)),
    )
    .service(
        web::scope("/certificates")
            .service(web::resource("/verify/{code}").get(verify_certificate))
            .service(web::resource("/{id}").get(get_certificate))
            .service(web::resource("/{id}/document").get(certificate_document)),
    );
}

/// The events API description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_event, get_event, add_participant, scan, issue_certificate, close_event,
        get_certificate, certificate_document, verify_certificate,
    ),
    components(schemas(
        CreateEvent, EventView, AddParticipant, ParticipantView, ScanRequest, AttendanceView,
        CertificateRequest, CertificateView, CloseView, Verification,
    )),
    tags((name = "events", description = "Events: exactly-once attendance scans and certificates")),
)]
pub struct AttendanceDoc;

fn actor(principal: &Principal) -> Actor {
    Actor::user(principal.id(), principal.role)
}

fn api_error(error: AttendanceError) -> ApiError {
    match error {
        AttendanceError::Invalid(fields) => ApiError::Validation(
            fields
                .into_iter()
                .map(|(field, message)| FieldError::new(field, message))
                .collect(),
        ),
        AttendanceError::EventNotFound => {
            ApiError::problem(ProblemType::NOT_FOUND, "no such event")
        }
        AttendanceError::UserNotFound => ApiError::problem(ProblemType::NOT_FOUND, "no such user"),
        AttendanceError::CertificateNotFound => {
            ApiError::problem(ProblemType::NOT_FOUND, "no such certificate")
        }
        AttendanceError::Forbidden(why) => ApiError::problem(ProblemType::FORBIDDEN, why),
        AttendanceError::OutsideWindow(why) => {
            ApiError::problem(ProblemType::SCAN_OUTSIDE_WINDOW, why)
        }
        e @ AttendanceError::NotAParticipant => {
            ApiError::problem(ProblemType::NOT_A_PARTICIPANT, e.to_string())
        }
        e @ AttendanceError::NotAttended => {
            ApiError::problem(ProblemType::NOT_ATTENDED, e.to_string())
        }
        AttendanceError::Store(e) => e.into(),
    }
}

/// Checks the format of an `Idempotency-Key` if one is sent. The natural key decides replays,
/// so the key itself is not stored.
fn check_idempotency_key(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(());
    };
    let invalid = |detail: String| ApiError::problem(ProblemType::INVALID_HEADER, detail);
    let raw = value.to_str().map_err(|_| {
        invalid("Idempotency-Key may contain only printable ASCII characters".into())
    })?;
    IdempotencyKey::parse(raw)
        .map(|_| ())
        .map_err(|e| invalid(e.to_string()))
}

/// 201 with the record when this request stored it, 200 with the same body when it existed.
fn recorded<T, V: Serialize>(record: Recorded<T>, view: impl FnOnce(T) -> V) -> HttpResponse {
    match record {
        Recorded::Inserted(t) => HttpResponse::Created().json(view(t)),
        Recorded::Existing(t) => HttpResponse::Ok().json(view(t)),
    }
}

/// `POST /events` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateEvent {
    /// 1–200 characters.
    pub title: String,
    /// Start of the attendance window (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// End of the attendance window; after `starts_at`.
    pub ends_at: DateTime<Utc>,
}

/// An event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Event id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Start of the attendance window.
    pub starts_at: DateTime<Utc>,
    /// End of the attendance window.
    pub ends_at: DateTime<Utc>,
    /// Organizer (null once that account is deleted).
    pub organizer_id: Option<Uuid>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it was closed (null while open).
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        Self {
            id: e.id.0,
            title: e.title,
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            organizer_id: e.organizer_id.map(UserId::as_uuid),
            created_at: e.created_at,
            closed_at: e.closed_at,
        }
    }
}

/// Creates an event (organizer or admin); the caller is its organizer.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = CreateEvent,
    responses((status = 201, body = EventView), (status = 403, description = "forbidden"), (status = 422, description = "validation-failed")))]
pub async fn create_event(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Json<CreateEvent>,
) -> Result<HttpResponse, ApiError> {
    caller.0.require(&[Role::Organizer, Role::Admin])?;
    let body = body.into_inner();
    let event = service(&state)
        .create_event(
            actor(&caller.0),
            NewEvent {
                title: body.title,
                starts_at: body.starts_at,
                ends_at: body.ends_at,
            },
        )
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Created().json(EventView::from(event)))
}

/// One event (any authenticated user).
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", params(("id" = Uuid, Path, description = "event id")),
    responses((status = 200, body = EventView), (status = 404, description = "not-found")))]
pub async fn get_event(
    state: web::Data<AppState>,
    _caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let event = service(&state)
        .event(EventId(path.into_inner()))
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(EventView::from(event)))
}

/// `POST /events/{id}/participants` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddParticipant {
    /// The user to add.
    pub user_id: Uuid,
}

/// A participation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantView {
    /// Event id.
    pub event_id: Uuid,
    /// Participant's user id.
    pub user_id: Uuid,
    /// When they were added.
    pub added_at: DateTime<Utc>,
}

impl From<Participant> for ParticipantView {
    fn from(p: Participant) -> Self {
        Self {
            event_id: p.event_id.0,
            user_id: p.user_id.as_uuid(),
            added_at: p.added_at,
        }
    }
}

/// Adds a participant (the event's organizer or an admin): 201 the first time, 200 with the
/// same body on any repeat.
#[utoipa::path(post, path = "/api/v1/events/{id}/participants", tag = "events", request_body = AddParticipant,
    params(("id" = Uuid, Path, description = "event id")),
    responses((status = 201, body = ParticipantView), (status = 200, body = ParticipantView, description = "already a participant"),
        (status = 403, description = "forbidden"), (status = 404, description = "not-found: event or user")))]
pub async fn add_participant(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<Uuid>,
    body: web::Json<AddParticipant>,
) -> Result<HttpResponse, ApiError> {
    let added = service(&state)
        .add_participant(
            actor(&caller.0),
            EventId(path.into_inner()),
            UserId(body.user_id),
        )
        .await
        .map_err(api_error)?;
    Ok(recorded(added, ParticipantView::from))
}

/// `POST /events/{id}/scans` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScanRequest {
    /// The scanned participant's user id.
    pub participant_id: Uuid,
}

/// A recorded attendance.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendanceView {
    /// Event id.
    pub event_id: Uuid,
    /// Participant's user id.
    pub participant_id: Uuid,
    /// Who scanned (null once that account is deleted).
    pub scanned_by: Option<Uuid>,
    /// When the first scan was recorded.
    pub scanned_at: DateTime<Utc>,
}

impl From<Attendance> for AttendanceView {
    fn from(a: Attendance) -> Self {
        Self {
            event_id: a.event_id.0,
            participant_id: a.participant_id.as_uuid(),
            scanned_by: a.scanned_by.map(UserId::as_uuid),
            scanned_at: a.scanned_at,
        }
    }
}

/// Records an attendance (the event's organizer or an admin scans). The first scan answers
/// 201; every repeat, with the same `Idempotency-Key`, another or none, 200 with the same body:
/// (event, participant) is the idempotency key.
#[utoipa::path(post, path = "/api/v1/events/{id}/scans", tag = "events", request_body = ScanRequest,
    params(("id" = Uuid, Path, description = "event id"),
        ("Idempotency-Key" = Option<String>, Header, description = "optional; its format is checked, the natural key decides")),
    responses((status = 201, body = AttendanceView), (status = 200, body = AttendanceView, description = "a repeat: the recorded attendance"),
        (status = 403, description = "forbidden"), (status = 404, description = "not-found"),
        (status = 422, description = "scan-outside-window or not-a-participant"), (status = 429, description = "rate-limited")))]
pub async fn scan(
    state: web::Data<AppState>,
    caller: Authenticated,
    req: HttpRequest,
    path: web::Path<Uuid>,
    body: web::Json<ScanRequest>,
) -> Result<HttpResponse, ApiError> {
    check_idempotency_key(&req)?;
    let scanned = service(&state)
        .scan(
            actor(&caller.0),
            EventId(path.into_inner()),
            UserId(body.participant_id),
        )
        .await
        .map_err(api_error)?;
    Ok(recorded(scanned, AttendanceView::from))
}

/// `POST /events/{id}/certificates` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CertificateRequest {
    /// The attendee's user id.
    pub participant_id: Uuid,
}

/// A certificate's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// Certificate id.
    pub id: Uuid,
    /// Event id.
    pub event_id: Uuid,
    /// Participant's user id.
    pub participant_id: Uuid,
    /// Participant's display name when issued.
    pub participant_name: String,
    /// Event title when issued.
    pub event_title: String,
    /// Public verification code (`GET /certificates/verify/{code}`).
    pub verification_code: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// Where its document is.
    pub document_url: String,
}

impl From<Certificate> for CertificateView {
    fn from(c: Certificate) -> Self {
        Self {
            document_url: format!("/api/v1/certificates/{}/document", c.id),
            id: c.id.0,
            event_id: c.event_id.0,
            participant_id: c.participant_id.as_uuid(),
            participant_name: c.participant_name,
            event_title: c.event_title,
            verification_code: c.verification_code.as_str().to_owned(),
            issued_at: c.issued_at,
        }
    }
}

/// Issues an attendee's certificate (the event's organizer or an admin): 201 the first time,
/// 200 with the same body on any repeat or when the close job issued it first.
#[utoipa::path(post, path = "/api/v1/events/{id}/certificates", tag = "events", request_body = CertificateRequest,
    params(("id" = Uuid, Path, description = "event id"),
        ("Idempotency-Key" = Option<String>, Header, description = "optional; its format is checked, the natural key decides")),
    responses((status = 201, body = CertificateView), (status = 200, body = CertificateView, description = "already issued"),
        (status = 403, description = "forbidden"), (status = 404, description = "not-found"),
        (status = 422, description = "not-attended")))]
pub async fn issue_certificate(
    state: web::Data<AppState>,
    caller: Authenticated,
    req: HttpRequest,
    path: web::Path<Uuid>,
    body: web::Json<CertificateRequest>,
) -> Result<HttpResponse, ApiError> {
    check_idempotency_key(&req)?;
    let issued = service(&state)
        .issue_certificate(
            actor(&caller.0),
            EventId(path.into_inner()),
            UserId(body.participant_id),
        )
        .await
        .map_err(api_error)?;
    Ok(recorded(issued, CertificateView::from))
}

/// What closing an event did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CloseView {
    /// The closed event.
    pub event: EventView,
    /// False when it was closed already.
    pub newly_closed: bool,
    /// Certificate jobs enqueued by this request.
    pub certificate_jobs_enqueued: usize,
}

impl From<CloseOutcome> for CloseView {
    fn from(o: CloseOutcome) -> Self {
        Self {
            event: o.event.into(),
            newly_closed: o.newly_closed,
            certificate_jobs_enqueued: o.jobs_enqueued,
        }
    }
}

/// Closes an event (the event's organizer or an admin; idempotent): no more scans, and one
/// certificate job per attendee, enqueued in the same transaction.
#[utoipa::path(post, path = "/api/v1/events/{id}/close", tag = "events", params(("id" = Uuid, Path, description = "event id")),
    responses((status = 200, body = CloseView), (status = 403, description = "forbidden"), (status = 404, description = "not-found")))]
pub async fn close_event(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let closed = service(&state)
        .close(actor(&caller.0), EventId(path.into_inner()))
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(CloseView::from(closed)))
}

/// A certificate's metadata (its participant, the event's organizer, support or admin).
#[utoipa::path(get, path = "/api/v1/certificates/{id}", tag = "events", params(("id" = Uuid, Path, description = "certificate id")),
    responses((status = 200, body = CertificateView), (status = 403, description = "forbidden"), (status = 404, description = "not-found")))]
pub async fn get_certificate(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let certificate = service(&state)
        .certificate(actor(&caller.0), CertificateId(path.into_inner()))
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(CertificateView::from(certificate)))
}

/// A certificate's document: a self-contained HTML page, as stored when it was issued.
#[utoipa::path(get, path = "/api/v1/certificates/{id}/document", tag = "events", params(("id" = Uuid, Path, description = "certificate id")),
    responses((status = 200, content_type = "text/html; charset=utf-8", body = String), (status = 403, description = "forbidden"), (status = 404, description = "not-found")))]
pub async fn certificate_document(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let certificate = service(&state)
        .certificate(actor(&caller.0), CertificateId(path.into_inner()))
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ))
        // The page needs nothing from anywhere: no scripts, no fetches, inline styles only.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .body(certificate.document))
}

/// The public answer to a verification code.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    /// Always true (an unknown code is 404).
    pub valid: bool,
    /// Certificate id.
    pub certificate_id: Uuid,
    /// Event id.
    pub event_id: Uuid,
    /// Event title.
    pub event_title: String,
    /// Participant's display name.
    pub participant_name: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// Verifies a certificate by its code (public, no authentication).
#[utoipa::path(get, path = "/api/v1/certificates/verify/{code}", tag = "events", params(("code" = String, Path, description = "verification code")),
    responses((status = 200, body = Verification), (status = 404, description = "not-found")))]
pub async fn verify_certificate(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let certificate = service(&state)
        .verify(&path.into_inner())
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(Verification {
        valid: true,
        certificate_id: certificate.id.0,
        event_id: certificate.event_id.0,
        event_title: certificate.event_title,
        participant_name: certificate.participant_name,
        issued_at: certificate.issued_at,
    }))
}
