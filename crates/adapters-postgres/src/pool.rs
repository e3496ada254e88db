//! The pooled diesel-async connection to Postgres.

use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{Hook, HookError, HookResult, Metrics};
use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use keel_domain::StoreError;

use crate::error::{POSTGRES, pool_error};

/// A pooled connection checked out of [`PgPool`].
pub type PgConn = Object<AsyncPgConnection>;

/// How long a request waits for a connection, or for a new one to open, before Postgres is
/// reported unavailable (503) instead of hanging.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Session limits set on every pooled connection: no statement runs longer than 15 s and no lock
/// is awaited longer than 5 s, so a stuck query or a lock queue turns into an error (503), never
/// into a request that hangs while holding a pool slot.
const SESSION_LIMITS: &str = "SET statement_timeout = 15000; SET lock_timeout = 5000; \
     SET idle_in_transaction_session_timeout = 60000";

fn establish_with_limits(
    url: &str,
) -> futures_util::future::BoxFuture<'_, diesel::ConnectionResult<AsyncPgConnection>> {
    async move {
        let mut conn = AsyncPgConnection::establish(url).await?;
        conn.batch_execute(SESSION_LIMITS)
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        Ok(conn)
    }
    .boxed()
}

/// Longest a pooled connection may sit unused and still be handed out.
const MAX_IDLE: Duration = Duration::from_secs(30);

/// Refuses a connection idle longer than [`MAX_IDLE`]; the pool then opens a fresh one.
fn drop_idle(
    _conn: &mut AsyncPgConnection,
    metrics: &Metrics,
) -> HookResult<diesel_async::pooled_connection::PoolError> {
    if metrics.last_used() > MAX_IDLE {
        return Err(HookError::message("idle too long to trust without a check"));
    }
    Ok(())
}

/// A bounded pool of Postgres connections, cheap to clone.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool<AsyncPgConnection>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the URL: it may carry a password.
        f.debug_struct("PgPool")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl PgPool {
    /// Builds a pool of at most `max_size` connections and checks that one can be opened.
    pub async fn connect(database_url: &str, max_size: usize) -> Result<Self, StoreError> {
        let mut config = ManagerConfig::default();
        config.custom_setup = Box::new(establish_with_limits);
        // No `SELECT 1` before every checkout: it doubled the round trips of short use cases (a
        // job claim, a seat). Instead a connection idle longer than `MAX_IDLE` is never reused
        // (see `drop_idle`), so one silently cut while idle (a NAT or failover dropping it) is
        // replaced rather than left to hang a request on TCP retransmissions.
        config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            database_url,
            config,
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECTION_TIMEOUT))
            .create_timeout(Some(CONNECTION_TIMEOUT))
            .recycle_timeout(Some(CONNECTION_TIMEOUT))
            .pre_recycle(Hook::sync_fn(drop_idle))
            .build()
            .map_err(|e| StoreError::unavailable(POSTGRES, e))?;
        let pool = Self { pool };
        drop(pool.get().await?);
        Ok(pool)
    }

    /// Checks a connection out of the pool.
    pub async fn get(&self) -> Result<PgConn, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Closes the pool: idle connections are dropped and no new ones are handed out.
    pub fn close(&self) {
        self.pool.close();
    }
}
