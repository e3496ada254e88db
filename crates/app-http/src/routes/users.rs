//! `/users/me` and the admin's role changes.

use actix_web::{HttpResponse, web};
use keel_domain::audit::{Actor, AuditEntry};
use keel_domain::events::DomainEvent;
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Role;
use keel_domain::pii::{PiiField, mask};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::UserView;
use crate::http::auth::{AdminCaller, Authenticated};
use crate::http::{ApiError, FieldError, ProblemType, RequestId};
use crate::state::AppState;

/// Registers `/users/me`, `/users/{id}/pii`, `DELETE /users/{id}` and `/admin/users/{id}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users/me").get(me))
        .service(web::resource("/users/{id}/pii").get(read_pii))
        .service(web::resource("/users/{id}").delete(delete_user))
        .service(web::resource("/admin/users/{id}").patch(change_role));
}

/// `GET /users/{id}/pii` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PiiQuery {
    /// Why the data is read; required for `support` and `admin`, kept in the audit log.
    pub reason: Option<String>,
}

/// Personal data of one user; absent fields were never given.
#[derive(Debug, Default, serde::Serialize, ToSchema)]
pub struct PiiView {
    /// Phone number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Postal address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Date of birth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    /// National id number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub national_id: Option<String>,
    /// True when values are masked (organizers).
    pub masked: bool,
}

/// How much of a user's PII a caller may see.
enum PiiAccess {
    /// The owner: everything, not audited.
    Owner,
    /// Support or admin: everything, with a reason, audited.
    Audited(String),
    /// Organizer: masked values only.
    Masked,
}

/// Reads a user's personal data: the owner sees it all; `support`/`admin` must give a reason
/// and every read is audited (who, whose, which fields, request id, reason); `organizer` sees
/// masked values; anyone else gets 403.
#[utoipa::path(get, path = "/api/v1/users/{id}/pii", tag = "users", params(("id" = Uuid, Path, description = "user id"), PiiQuery),
    responses((status = 200, body = PiiView), (status = 400, description = "bad-request: reason missing"), (status = 403, description = "forbidden")))]
pub async fn read_pii(
    state: web::Data<AppState>,
    caller: Authenticated,
    request_id: RequestId,
    path: web::Path<Uuid>,
    query: web::Query<PiiQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = UserId(path.into_inner());
    let principal = caller.0;
    let access = if principal.id() == id {
        PiiAccess::Owner
    } else {
        match principal.role {
            Role::Support | Role::Admin => match query
                .reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
            {
                Some(reason) => PiiAccess::Audited(reason.to_owned()),
                None => {
                    return Err(ApiError::problem(
                        ProblemType::BAD_REQUEST,
                        "reading another user's personal data needs ?reason=…",
                    ));
                }
            },
            Role::Organizer => PiiAccess::Masked,
            Role::Participant => {
                return Err(ApiError::problem(
                    ProblemType::FORBIDDEN,
                    "you may read only your own personal data",
                ));
            }
        }
    };
    let user = state
        .stores
        .users
        .find_by_id(id)
        .await?
        .ok_or_else(|| ApiError::problem(ProblemType::NOT_FOUND, "no such user"))?;
    let owner = id.to_string();
    let mut view = PiiView {
        masked: matches!(access, PiiAccess::Masked),
        ..PiiView::default()
    };
    for (field, sealed) in &user.pii {
        let plain = state
            .identity
            .cipher
            .open(&owner, *field, sealed)
            .map_err(|e| ApiError::Internal(format!("PII of {owner} cannot be opened: {e}")))?;
        let shown = if view.masked {
            mask(*field, &plain)
        } else {
            plain
        };
        match field {
            PiiField::Phone => view.phone = Some(shown),
            PiiField::Address => view.address = Some(shown),
            PiiField::DateOfBirth => view.date_of_birth = Some(shown),
            PiiField::NationalId => view.national_id = Some(shown),
        }
    }
    if let PiiAccess::Audited(reason) = access {
        let fields: Vec<&str> = user.pii.keys().map(|f| f.as_str()).collect();
        let entry = AuditEntry::new(
            Actor::user(principal.id()),
            "pii.read",
            format!("user:{id}"),
            state.clock.now(),
        )
        .with_after(serde_json::json!({"fields": fields}))
        .with_reason(reason)
        .with_request_id(request_id.as_str());
        // No audit entry, no data: an unaudited read must not happen.
        state.stores.audit.append(entry).await?;
    }
    Ok(HttpResponse::Ok().json(view))
}

/// Deletes an account (the owner or an admin): the user row, its personal data and its
/// refresh tokens go; the deletion is audited.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "user id")),
    responses((status = 204), (status = 403, description = "forbidden"), (status = 404, description = "not-found")))]
pub async fn delete_user(
    state: web::Data<AppState>,
    caller: Authenticated,
    request_id: RequestId,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = UserId(path.into_inner());
    if caller.0.id() != id {
        caller.0.require(&[Role::Admin])?;
    }
    if !state.stores.users.delete(id).await? {
        return Err(ApiError::problem(ProblemType::NOT_FOUND, "no such user"));
    }
    let entry = AuditEntry::new(
        Actor::user(caller.0.id()),
        "user.deleted",
        format!("user:{id}"),
        state.clock.now(),
    )
    .with_request_id(request_id.as_str());
    let audited = state.stores.audit.append(entry).await;
    // The account is gone whatever the audit log says: clean up after it first.
    // The account's mail goes with it (Postgres cascades already; the memory mailbox does not).
    if let Err(e) = state.stores.mailbox.forget(id).await {
        tracing::error!(error = %e, user_id = %id, "mail of a deleted account not forgotten");
    }
    // Other capabilities (boards, registrations) drop or anonymise what they hold for this user.
    if let Err(e) = state
        .stores
        .events
        .publish(DomainEvent::UserDeleted { user_id: id })
        .await
    {
        tracing::error!(error = %e, user_id = %id, "UserDeleted could not be published");
    }
    if let Err(e) = audited {
        tracing::error!(error = %e, user_id = %id, "account deletion could not be audited");
        return Err(e.into());
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users",
    responses((status = 200, body = UserView), (status = 401, description = "unauthenticated")))]
pub async fn me(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .stores
        .users
        .find_by_id(caller.0.id())
        .await?
        .ok_or_else(|| {
            ApiError::problem(ProblemType::NOT_FOUND, "this account no longer exists")
        })?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// `PATCH /admin/users/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleChange {
    /// `participant`, `organizer`, `support` or `admin`.
    pub role: String,
    /// Why (kept in the audit log).
    pub reason: Option<String>,
}

/// Changes a user's role (admin only); audited with before and after.
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "users", request_body = RoleChange,
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 403, description = "forbidden"), (status = 404, description = "not-found")))]
pub async fn change_role(
    state: web::Data<AppState>,
    caller: AdminCaller,
    request_id: RequestId,
    path: web::Path<Uuid>,
    body: web::Json<RoleChange>,
) -> Result<HttpResponse, ApiError> {
    let role: Role = body.role.parse().map_err(|_| {
        ApiError::Validation(vec![FieldError::new(
            "role",
            "must be participant, organizer, support or admin",
        )])
    })?;
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    // Checked before the change: a reason the audit log cannot store must not leave an
    // unaudited role change behind (a NUL used to fail the audit append after the change).
    if reason.is_some_and(|r| r.chars().any(char::is_control)) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "reason",
            "must not contain control characters",
        )]));
    }
    let id = UserId(path.into_inner());
    let Some((before, after)) = state.stores.users.set_role(id, role).await? else {
        return Err(ApiError::problem(ProblemType::NOT_FOUND, "no such user"));
    };
    let mut entry = AuditEntry::new(
        Actor::user(caller.0.id()),
        "user.role_changed",
        format!("user:{id}"),
        state.clock.now(),
    )
    .with_before(serde_json::json!({"role": before.as_str()}))
    .with_after(serde_json::json!({"role": after.as_str()}))
    .with_request_id(request_id.as_str());
    if let Some(reason) = reason {
        entry = entry.with_reason(reason);
    }
    // The change is already made; an audit failure must not hide it from the caller, but it is
    // an incident: log it loudly.
    if let Err(e) = state.stores.audit.append(entry).await {
        tracing::error!(error = %e, "role change could not be audited");
        return Err(e.into());
    }
    let user = state
        .stores
        .users
        .find_by_id(id)
        .await?
        .ok_or_else(|| ApiError::problem(ProblemType::NOT_FOUND, "no such user"))?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}
