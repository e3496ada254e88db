//! Schema migrations, embedded from the workspace's `migrations/` folder.

use diesel::RunQueryDsl;
use diesel::connection::Connection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use keel_domain::StoreError;

use crate::error::{POSTGRES, query_error};

/// Every migration of keel, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Advisory lock key held while migrating, so two nodes starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6b65_656c_0001;

/// Applies every pending migration to the database at `database_url`; returns the versions applied.
///
/// diesel's migration harness is synchronous, so it runs on a blocking thread over an
/// [`AsyncConnectionWrapper`] (calling it on an async worker thread would panic).
pub async fn run_pending_migrations(database_url: &str) -> Result<Vec<String>, StoreError> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| StoreError::unavailable(POSTGRES, e))?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .execute(&mut conn)
            .map_err(query_error)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| StoreError::unavailable(POSTGRES, format!("migration failed: {e}")));
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            .execute(&mut conn)
            .map_err(query_error)?;
        applied
    })
    .await
    .map_err(|e| StoreError::unavailable(POSTGRES, format!("migration task failed: {e}")))?
}
