//! Competitions: registrations that never oversell, confirmation and reminder mails.
//!
//! Handlers are thin: parse, authorize, call a [`CompetitionService`] use case, map its errors
//! to problems. Registrations opt into `Idempotency-Key` replay (optional key: the natural key
//! (user, competition) already guarantees one row) and the `default` rate class.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use keel_adapters_memory::MemoryJobQueue;
use keel_adapters_memory::competitions::MemoryCompetitionStore;
use keel_adapters_postgres::PgPool;
use keel_adapters_postgres::competitions::PgCompetitionStore;
use keel_domain::StoreError;
use keel_domain::competitions::{
    Competition, CompetitionDraft, CompetitionError, CompetitionId, CompetitionService,
    CompetitionStore, DefinitionCache, NewRegistration, Registered, RegistrationReceipt,
    ReleaseDeletedSeats, ReleaseDeletedSeatsHandler, SendReminder, SendReminderHandler,
};
use keel_domain::events::DomainEvent;
use keel_domain::idempotency::{Claim, StoredResponse};
use keel_domain::identity::values::Role;
use keel_domain::jobs::{Every, JobRegistry, PeriodicJob, ScheduleError};
use keel_domain::ratelimit::LimitClass;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::http::auth::Authenticated;
use crate::http::idempotency::{IdempotencyClaim, idempotency_optional, stored_json};
use crate::http::page::{self, TimeCursor};
use crate::http::rate_limit::rate_limit;
use crate::http::{ApiError, FieldError, ProblemType};
use crate::state::AppState;

/// The product's stores.
#[derive(Clone)]
pub struct Competitions {
    /// Competitions and registrations.
    pub store: Arc<dyn CompetitionStore>,
    /// The competition definitions this node keeps for registrations.
    pub definitions: Arc<DefinitionCache>,
}

impl Competitions {
    /// In-memory stores; jobs go to `jobs`.
    pub fn memory(jobs: &MemoryJobQueue) -> Self {
        Self {
            store: Arc::new(MemoryCompetitionStore::new(jobs.clone())),
            definitions: Arc::default(),
        }
    }

    /// Postgres stores.
    pub fn postgres(pool: &PgPool) -> Self {
        Self {
            store: Arc::new(PgCompetitionStore::new(pool.clone())),
            definitions: Arc::default(),
        }
    }
}

fn service(state: &AppState) -> CompetitionService {
    let competitions = &state.stores.products.competitions;
    CompetitionService::new(competitions.store.clone(), state.clock.clone())
        .with_definitions(Arc::clone(&competitions.definitions))
}

/// Mounts the product's routes inside `/api/v1`.
pub fn configure(api: &mut web::ServiceConfig) {
    let limited = || from_fn(rate_limit(LimitClass::Default));
    // One scope: other routes never try these patterns.
    api.service(
        web::scope("/competitions")
            .service(
                web::resource("")
                    .wrap(limited())
                    .get(list_competitions)
                    .post(create_competition),
            )
            .service(web::resource("/{id}").wrap(limited()).get(get_competition))
            .service(
                web::resource("/{id}/registrations")
                    .wrap(from_fn(idempotency_optional))
                    .wrap(limited())
                    .post(register),
            )
            .service(
                web::resource("/{id}/registrations/me")
                    .wrap(limited())
                    .delete(withdraw),
            ),
    );
}

/// Registers the product's job kinds.
pub fn register_jobs(registry: &mut JobRegistry, state: &AppState) {
    registry.register::<SendReminder>(SendReminderHandler::new(
        state.stores.products.competitions.store.clone(),
        state.stores.users.clone(),
        state.stores.mail_sender.clone(),
        state.clock.clone(),
    ));
    registry.register::<ReleaseDeletedSeats>(ReleaseDeletedSeatsHandler::new(
        state.stores.products.competitions.store.clone(),
        state.clock.clone(),
    ));
}

/// How often the seats of deleted accounts are swept (the crash-safe path behind the
/// `UserDeleted` subscriber).
pub const RELEASE_DELETED_EVERY: Duration = Duration::from_secs(5 * 60);

/// The product's periodic jobs: [`ReleaseDeletedSeats`] every [`RELEASE_DELETED_EVERY`], so a
/// deleted account's seats are freed even when its `UserDeleted` event was lost.
pub fn periodic_jobs(_state: &AppState) -> Result<Vec<PeriodicJob>, ScheduleError> {
    let sweep = PeriodicJob::new(
        Every::interval(RELEASE_DELETED_EVERY)?,
        &ReleaseDeletedSeats,
    )
    .map_err(|e| ScheduleError::Cron {
        expression: "payload".into(),
        reason: e.to_string(),
    })?;
    Ok(vec![sweep])
}

/// Starts the product's domain-event subscribers: a deleted account's seats in competitions
/// that have not started are freed (with their reminders). This is the fast path; a lost event
/// is made up for by the [`ReleaseDeletedSeats`] sweep ([`periodic_jobs`]).
pub fn subscribe(state: &AppState) -> Vec<JoinHandle<()>> {
    // Subscribed before spawning, so no event published from now on is missed.
    let mut events = state.stores.events.subscribe();
    let competitions = service(state);
    vec![tokio::spawn(async move {
        while let Some(event) = events.next().await {
            #[allow(unreachable_patterns, clippy::single_match)]
            match event {
                DomainEvent::UserDeleted { user_id } => {
                    match competitions.release_user(user_id).await {
                        Ok(freed) => {
                            tracing::info!(%user_id, freed, "seats of a deleted account freed");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, %user_id, "seats of a deleted account not freed");
                        }
                    }
                }
                _ => {}
            }
        }
    })]
}

/// The product's OpenAPI paths and schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    CompetitionsDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    paths(create_competition, get_competition, list_competitions, register, withdraw),
    components(schemas(NewCompetition, CompetitionView, CompetitionList, RegistrationView)),
    tags((name = "competitions", description = "Competitions and seat registrations"))
)]
struct CompetitionsDoc;

/// `POST /competitions` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCompetition {
    /// 1–200 characters.
    pub title: String,
    /// Seats, 1–1 000 000.
    pub capacity: i64,
    /// Registrations and withdrawals are accepted strictly before this instant.
    pub registration_deadline: DateTime<Utc>,
    /// Start; after the deadline.
    pub starts_at: DateTime<Utc>,
}

/// A competition with its free seats.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompetitionView {
    /// Identity.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Seats in all.
    pub capacity: u32,
    /// Seats taken.
    pub seats_taken: u32,
    /// Seats still free (never below 0).
    pub seats_left: u32,
    /// Registration deadline.
    pub registration_deadline: DateTime<Utc>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// The organizer or admin who created it.
    pub created_by: Uuid,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<&Competition> for CompetitionView {
    fn from(c: &Competition) -> Self {
        Self {
            id: c.id.0,
            title: c.title.clone(),
            capacity: c.capacity,
            seats_taken: c.seats_taken,
            seats_left: c.seats_left(),
            registration_deadline: c.registration_deadline,
            starts_at: c.starts_at,
            created_by: c.created_by.as_uuid(),
            created_at: c.created_at,
        }
    }
}

/// A page of competitions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompetitionList {
    /// The competitions.
    pub items: Vec<CompetitionView>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// A registration: the caller's seat.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationView {
    /// Registration id.
    pub id: Uuid,
    /// The competition.
    pub competition_id: Uuid,
    /// The registrant.
    pub user_id: Uuid,
    /// When it was made.
    pub registered_at: DateTime<Utc>,
    /// Seats left right after it.
    pub seats_left: u32,
}

impl From<&Registered> for RegistrationView {
    fn from(r: &Registered) -> Self {
        Self {
            id: r.registration.id.0,
            competition_id: r.registration.competition_id.0,
            user_id: r
                .registration
                .user_id
                .map(|u| u.as_uuid())
                .unwrap_or_default(),
            registered_at: r.registration.registered_at,
            seats_left: r.seats_left,
        }
    }
}

/// The `201` of a registration, stored with the seat where the store can (Postgres).
struct ReplayReceipt(IdempotencyClaim);

impl ReplayReceipt {
    fn view(registration: &NewRegistration, seats_left: u32) -> RegistrationView {
        RegistrationView {
            id: registration.id.0,
            competition_id: registration.competition_id.0,
            user_id: registration.user_id.as_uuid(),
            registered_at: registration.registered_at,
            seats_left,
        }
    }
}

impl RegistrationReceipt for ReplayReceipt {
    fn claim(&self) -> &Claim {
        self.0.claim()
    }

    fn response(
        &self,
        registration: &NewRegistration,
        seats_left: u32,
    ) -> Result<StoredResponse, StoreError> {
        stored_json(StatusCode::CREATED, &Self::view(registration, seats_left))
            .map(|(stored, _)| stored)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// Paging of `GET /competitions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

fn problem(error: CompetitionError) -> ApiError {
    match error {
        CompetitionError::Invalid(violations) => ApiError::Validation(
            violations
                .into_iter()
                .map(|v| FieldError::new(v.field, v.message))
                .collect(),
        ),
        CompetitionError::NotFound => {
            ApiError::problem(ProblemType::NOT_FOUND, "no such competition")
        }
        CompetitionError::Closed => ApiError::problem(
            ProblemType::REGISTRATION_CLOSED,
            "the registration deadline has passed",
        ),
        CompetitionError::Full => ApiError::problem(
            ProblemType::COMPETITION_FULL,
            "every seat of this competition is taken",
        ),
        CompetitionError::AlreadyRegistered => ApiError::problem(
            ProblemType::ALREADY_REGISTERED,
            "you already hold a seat in this competition",
        ),
        CompetitionError::NotRegistered => ApiError::problem(
            ProblemType::NOT_FOUND,
            "you are not registered for this competition",
        ),
        CompetitionError::Store(e) => e.into(),
    }
}

/// Creates a competition (organizer or admin).
#[utoipa::path(post, path = "/api/v1/competitions", tag = "competitions", request_body = NewCompetition,
    responses((status = 201, body = CompetitionView), (status = 403, description = "forbidden"),
        (status = 422, description = "validation-failed")))]
pub async fn create_competition(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Json<NewCompetition>,
) -> Result<HttpResponse, ApiError> {
    caller.0.require(&[Role::Organizer, Role::Admin])?;
    let body = body.into_inner();
    let draft = CompetitionDraft {
        title: body.title,
        capacity: body.capacity,
        registration_deadline: body.registration_deadline,
        starts_at: body.starts_at,
    };
    let created = service(&state)
        .create(&draft, caller.0.id())
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Created().json(CompetitionView::from(&created)))
}

/// One competition with its free seats.
#[utoipa::path(get, path = "/api/v1/competitions/{id}", tag = "competitions",
    params(("id" = Uuid, Path, description = "competition id")),
    responses((status = 200, body = CompetitionView), (status = 404, description = "not-found")))]
pub async fn get_competition(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = service(&state)
        .get(CompetitionId(path.into_inner()))
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(CompetitionView::from(&found)))
}

/// Competitions, newest first, with keyset pagination.
#[utoipa::path(get, path = "/api/v1/competitions", tag = "competitions", params(ListQuery),
    responses((status = 200, body = CompetitionList), (status = 422, description = "validation-failed")))]
pub async fn list_competitions(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page::limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(TimeCursor::decode)
        .transpose()?
        .map(|c| (c.at, CompetitionId(c.id)));
    let mut items = service(&state)
        .list(after, limit.saturating_add(1))
        .await
        .map_err(problem)?;
    let next_cursor = page::next_cursor(&mut items, limit, |c| TimeCursor {
        at: c.created_at,
        id: c.id.0,
    });
    Ok(HttpResponse::Ok().json(CompetitionList {
        items: items.iter().map(CompetitionView::from).collect(),
        next_cursor,
    }))
}

/// Registers the caller: one seat, a confirmation mail and a reminder 24 h before the start.
#[utoipa::path(post, path = "/api/v1/competitions/{id}/registrations", tag = "competitions",
    params(("id" = Uuid, Path, description = "competition id"),
        ("Idempotency-Key" = Option<String>, Header, description = "replays the first response")),
    responses((status = 201, body = RegistrationView), (status = 404, description = "not-found"),
        (status = 409, description = "competition-full or already-registered"),
        (status = 422, description = "registration-closed")))]
pub async fn register(
    state: web::Data<AppState>,
    caller: Authenticated,
    claim: Option<IdempotencyClaim>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let user = caller.0.id();
    let receipt = claim.map(ReplayReceipt);
    let registered = service(&state)
        .register(
            CompetitionId(path.into_inner()),
            user,
            receipt.as_ref().map(|r| r as &dyn RegistrationReceipt),
        )
        .await
        .map_err(problem)?;
    // The same bytes the store committed with the seat (if it did), so a replay is identical.
    let (stored, response) =
        stored_json(StatusCode::CREATED, &RegistrationView::from(&registered))?;
    if let Some(ReplayReceipt(claim)) = receipt
        && registered.receipt_stored
    {
        claim.completed_in_transaction(stored);
    }
    Ok(response)
}

/// Withdraws the caller's registration before the deadline, freeing the seat.
#[utoipa::path(delete, path = "/api/v1/competitions/{id}/registrations/me", tag = "competitions",
    params(("id" = Uuid, Path, description = "competition id")),
    responses((status = 204), (status = 404, description = "not-found"),
        (status = 422, description = "registration-closed")))]
pub async fn withdraw(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service(&state)
        .withdraw(CompetitionId(path.into_inner()), caller.0.id())
        .await
        .map_err(problem)?;
    Ok(HttpResponse::NoContent().finish())
}
