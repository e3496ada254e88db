//! Route table: ops routes and the live scoreboard page at the root, the product API under
//! `/api/v1`.

pub mod admin;
pub mod auth;
pub mod jobs;
pub mod mailbox;
pub mod ops;
pub mod users;

use actix_web::web;

use crate::http::{ApiError, ProblemType};
use crate::products::scoreboard::page;

/// Base path of the product API.
pub const API_BASE: &str = "/api/v1";

/// Registers the ops routes and the `/api/v1` scope (plus `extra_api` routes inside it).
pub fn configure(
    cfg: &mut web::ServiceConfig,
    extra_api: &(dyn Fn(&mut web::ServiceConfig) + Send + Sync),
) {
    ops::configure(cfg);
    cfg.route("/", web::get().to(page::index))
        .route("/scoreboard.js", web::get().to(page::script));
    cfg.service(web::scope(API_BASE).configure(|api| {
        auth::configure(api);
        admin::configure(api);
        users::configure(api);
        jobs::configure(api);
        mailbox::configure(api);
        crate::products::configure(api);
        extra_api(api);
    }));
}

/// The answer for paths that match no route: a 404 problem.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::problem(
        ProblemType::NOT_FOUND,
        "no resource matches this path",
    ))
}
