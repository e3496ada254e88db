//! Events: attendance scans and certificates issued exactly once.
//!
//! The natural key (event, participant) is this product's idempotency key: scans and
//! certificate requests do not go through the stored-response idempotency middleware (which
//! would replay the first 201); the store's unique keys decide, so the first request answers
//! 201 and every repeat, with the same `Idempotency-Key`, another or none, 200 with the same
//! body.

pub mod routes;

use std::sync::Arc;

use actix_web::web;
use keel_adapters_memory::MemoryJobQueue;
use keel_adapters_memory::attendance::MemoryAttendanceStore;
use keel_adapters_postgres::PgPool;
use keel_adapters_postgres::attendance::PgAttendanceStore;
use keel_domain::attendance::{
    AttendanceService, AttendanceStore, IssueCertificate, IssueCertificateHandler,
};
use keel_domain::events::DomainEvent;
use keel_domain::jobs::JobRegistry;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// The product's stores.
#[derive(Clone)]
pub struct Attendance {
    /// Events, participants, attendances and certificates.
    pub store: Arc<dyn AttendanceStore>,
    /// The memory store, kept to forget deleted users (Postgres does it by foreign keys).
    memory: Option<MemoryAttendanceStore>,
}

impl Attendance {
    /// In-memory stores; jobs go to `jobs`.
    pub fn memory(jobs: &MemoryJobQueue) -> Self {
        let store = MemoryAttendanceStore::new(jobs);
        Self {
            store: Arc::new(store.clone()),
            memory: Some(store),
        }
    }

    /// Postgres stores.
    pub fn postgres(pool: &PgPool) -> Self {
        Self {
            store: Arc::new(PgAttendanceStore::new(pool.clone())),
            memory: None,
        }
    }
}

/// The use cases over `state`'s stores and clock.
pub fn service(state: &AppState) -> AttendanceService {
    AttendanceService::new(
        state.stores.products.attendance.store.clone(),
        state.stores.users.clone(),
        state.clock.clone(),
    )
}

/// Mounts the product's routes inside `/api/v1`.
pub fn configure(api: &mut web::ServiceConfig) {
    routes::configure(api);
}

/// Registers the product's job kinds: `certificates.issue`.
pub fn register_jobs(registry: &mut JobRegistry, state: &AppState) {
    registry.register::<IssueCertificate>(IssueCertificateHandler::new(service(state)));
}

/// Starts the product's domain-event subscribers: on memory stores, a deleted user's
/// participations, attendances and certificates are forgotten (Postgres cascades them).
pub fn subscribe(state: &AppState) -> Vec<JoinHandle<()>> {
    let Some(store) = state.stores.products.attendance.memory.clone() else {
        return Vec::new();
    };
    let mut events = state.stores.events.subscribe();
    vec![tokio::spawn(async move {
        while let Some(event) = events.next().await {
            #[allow(unreachable_patterns, irrefutable_let_patterns)]
            if let DomainEvent::UserDeleted { user_id } = event {
                store.forget_user(user_id);
            }
        }
    })]
}

/// The product's OpenAPI paths and schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    routes::AttendanceDoc::openapi()
}
