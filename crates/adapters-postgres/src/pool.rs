//! The pooled diesel-async connection to Postgres.

use std::time::Duration;

use deadpool::Runtime;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use keel_domain::StoreError;

use crate::error::{POSTGRES, pool_error};

/// A pooled connection checked out of [`PgPool`].
pub type PgConn = Object<AsyncPgConnection>;

/// How long a request waits for a connection, or for a new one to open, before Postgres is
/// reported unavailable (503) instead of hanging.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

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
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(database_url);
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECTION_TIMEOUT))
            .create_timeout(Some(CONNECTION_TIMEOUT))
            .recycle_timeout(Some(CONNECTION_TIMEOUT))
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
