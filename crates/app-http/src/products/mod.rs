//! The products keel serves on its core: each module wires one product's stores, routes, job
//! kinds and event subscribers, so `state`, `server` and `background` only call these hooks.

pub mod attendance;
pub mod competitions;
pub mod scoreboard;
pub mod wallet;

use actix_web::web;
use keel_adapters_memory::{MemoryJobQueue, MemoryUserStore};
use keel_adapters_postgres::PgPool;
use keel_domain::jobs::{JobRegistry, PeriodicJob, ScheduleError};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Every product's stores.
#[derive(Clone)]
pub struct Products {
    /// Events: attendance and certificates.
    pub attendance: attendance::Attendance,
    /// Competitions: registration and seats.
    pub competitions: competitions::Competitions,
    /// Wallet: the ledger and the provider's webhook log.
    pub wallet: wallet::Wallet,
    /// Scoreboard: scores and the board.
    pub scoreboard: scoreboard::Scoreboard,
}

impl Products {
    /// In-memory stores; jobs they enqueue go to `jobs`.
    pub fn memory(jobs: &MemoryJobQueue, users: &MemoryUserStore) -> Self {
        Self {
            attendance: attendance::Attendance::memory(jobs),
            competitions: competitions::Competitions::memory(jobs),
            wallet: wallet::Wallet::memory(jobs),
            scoreboard: scoreboard::Scoreboard::memory(users),
        }
    }

    /// Postgres stores; jobs they enqueue are written in their own transactions.
    pub fn postgres(pool: &PgPool) -> Self {
        Self {
            attendance: attendance::Attendance::postgres(pool),
            competitions: competitions::Competitions::postgres(pool),
            wallet: wallet::Wallet::postgres(pool),
            scoreboard: scoreboard::Scoreboard::postgres(pool),
        }
    }
}

/// Mounts every product's routes inside `/api/v1`.
pub fn configure(api: &mut web::ServiceConfig) {
    attendance::configure(api);
    competitions::configure(api);
    wallet::configure(api);
    scoreboard::configure(api);
}

/// Registers every product's job kinds.
pub fn register_jobs(registry: &mut JobRegistry, state: &AppState) {
    attendance::register_jobs(registry, state);
    competitions::register_jobs(registry, state);
    wallet::register_jobs(registry, state);
    scoreboard::register_jobs(registry, state);
}

/// Every product's periodic jobs.
pub fn periodic_jobs(state: &AppState) -> Result<Vec<PeriodicJob>, ScheduleError> {
    let mut jobs = competitions::periodic_jobs(state)?;
    jobs.extend(wallet::periodic_jobs(state)?);
    jobs.extend(scoreboard::periodic_jobs(state)?);
    Ok(jobs)
}

/// Starts every product's domain-event subscribers; the tasks end with the process.
pub fn subscribe(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut tasks = attendance::subscribe(state);
    tasks.extend(competitions::subscribe(state));
    tasks.extend(scoreboard::subscribe(state));
    tasks
}

/// Every product's OpenAPI paths and schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = attendance::openapi();
    doc.merge(competitions::openapi());
    doc.merge(wallet::openapi());
    doc.merge(scoreboard::openapi());
    doc
}
