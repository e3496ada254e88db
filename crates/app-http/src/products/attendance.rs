//! Events: attendance scans and certificates issued exactly once.

use actix_web::web;
use keel_adapters_memory::MemoryJobQueue;
use keel_adapters_postgres::PgPool;
use keel_domain::jobs::JobRegistry;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// The product's stores.
#[derive(Clone)]
pub struct Attendance {}

impl Attendance {
    /// In-memory stores; jobs go to `jobs`.
    pub fn memory(jobs: &MemoryJobQueue) -> Self {
        let _ = jobs;
        Self {}
    }

    /// Postgres stores.
    pub fn postgres(pool: &PgPool) -> Self {
        let _ = pool;
        Self {}
    }
}

/// Mounts the product's routes inside `/api/v1`.
pub fn configure(api: &mut web::ServiceConfig) {
    let _ = api;
}

/// Registers the product's job kinds.
pub fn register_jobs(registry: &mut JobRegistry, state: &AppState) {
    let _ = (registry, state);
}

/// Starts the product's domain-event subscribers.
pub fn subscribe(state: &AppState) -> Vec<JoinHandle<()>> {
    let _ = state;
    Vec::new()
}

/// The product's OpenAPI paths and schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new().build()
}
