//! `/users/me` and the admin's role changes.

use actix_web::{HttpResponse, web};
use keel_domain::audit::{Actor, AuditEntry};
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Role;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::UserView;
use crate::http::auth::Authenticated;
use crate::http::{ApiError, FieldError, ProblemType, RequestId};
use crate::state::AppState;

/// Registers `/users/me` and `/admin/users/{id}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users/me").get(me))
        .service(web::resource("/admin/users/{id}").patch(change_role));
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
    caller: Authenticated,
    request_id: RequestId,
    path: web::Path<Uuid>,
    body: web::Json<RoleChange>,
) -> Result<HttpResponse, ApiError> {
    caller.0.require(&[Role::Admin])?;
    let role: Role = body.role.parse().map_err(|_| {
        ApiError::Validation(vec![FieldError::new(
            "role",
            "must be participant, organizer, support or admin",
        )])
    })?;
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
    if let Some(reason) = body.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        entry = entry.with_reason(reason.trim());
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
