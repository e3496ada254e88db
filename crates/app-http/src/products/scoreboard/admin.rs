//! `POST /admin/scoreboard/rebuild`: replaces the board cache with Postgres's board (admins
//! only, audited).

use actix_web::{HttpResponse, web};
use keel_domain::identity::values::Role;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{problem, service};
use crate::http::audit::{self, Change};
use crate::http::auth::Authenticated;
use crate::http::{ApiError, RequestId};
use crate::state::AppState;

/// Mounts the admin routes.
pub(super) fn configure(api: &mut web::ServiceConfig) {
    api.service(web::resource("/admin/scoreboard/rebuild").post(rebuild));
}

/// The admin routes' OpenAPI.
pub(super) fn openapi() -> utoipa::openapi::OpenApi {
    BoardAdminDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(paths(rebuild), components(schemas(Rebuilt)))]
struct BoardAdminDoc;

/// What a rebuild wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rebuilt {
    /// Standings written to the cache (0 when no cache is configured).
    pub rebuilt: u64,
}

/// Rebuilds the board cache from Postgres, the truth (admin, audited).
#[utoipa::path(post, path = "/api/v1/admin/scoreboard/rebuild", tag = "scoreboard",
    responses((status = 200, body = Rebuilt), (status = 401, description = "unauthenticated"),
        (status = 403, description = "forbidden"),
        (status = 503, description = "dependency-unavailable: the cache or the store is down")))]
pub async fn rebuild(
    state: web::Data<AppState>,
    caller: Authenticated,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    caller.0.require(&[Role::Admin])?;
    let rebuilt = service(&state).rebuild().await.map_err(problem)?;
    let change = Change {
        action: "scoreboard.rebuilt",
        subject: "scoreboard:global".into(),
        before: None,
        after: Some(serde_json::json!({ "entries": rebuilt })),
        reason: None,
    };
    audit::record(&state, caller.0.id(), &request_id, change).await?;
    Ok(HttpResponse::Ok().json(Rebuilt { rebuilt }))
}
