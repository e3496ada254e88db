//! The shared connection pool, its key prefix and its timeouts.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::AsyncConnectionConfig;
use deadpool_redis::{Connection, Manager, Pool, Runtime};
use keel_domain::StoreError;
use redis::aio::MultiplexedConnection;

/// Prefix of every key unless [`RedisPool::with_prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "keel";

/// Longest time one operation (waiting for a connection, connecting, one round trip) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A pool of multiplexed Redis connections plus the prefix of every key this process uses.
///
/// Commands share one multiplexed connection taken from the pool: redis-rs pipelines concurrent
/// commands over it, and no per-command checkout (which costs deadpool-redis a `PING` round trip)
/// sits on the hot path. When that connection fails, the next command takes a fresh one from
/// the pool (checked with a `PING`). Cloning is cheap and shares both.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool,
    prefix: Arc<str>,
    shared: Arc<std::sync::Mutex<Option<MultiplexedConnection>>>,
    client: redis::Client,
}

impl RedisPool {
    /// Builds a pool of at most `max_size` connections to `url` and checks it with one `PING`.
    ///
    /// Connecting, waiting for a free connection and every reply are bounded by
    /// [`COMMAND_TIMEOUT`]. Fails with [`StoreError::Unavailable`] when the URL is invalid or
    /// Redis does not answer.
    pub async fn connect(url: &str, max_size: usize) -> Result<Self, StoreError> {
        let pool = Self::lazy(url, max_size)?;
        pool.ping().await?;
        Ok(pool)
    }

    /// Builds the pool without contacting Redis: connections open on first use. Fails only on
    /// an invalid URL. A process that must start while Redis is down uses this and degrades
    /// (each command fails fast with [`StoreError::Unavailable`]) until Redis is back.
    pub fn lazy(url: &str, max_size: usize) -> Result<Self, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let invalid = |e: redis::RedisError| unavailable(format!("invalid Redis URL: {e}"));
        let manager = Manager::new_with_config(url, config).map_err(invalid)?;
        let client = redis::Client::open(url).map_err(invalid)?;
        let pool = Pool::builder(manager)
            .max_size(max_size.max(1))
            .wait_timeout(Some(COMMAND_TIMEOUT))
            .create_timeout(Some(COMMAND_TIMEOUT))
            .recycle_timeout(Some(COMMAND_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(unavailable)?;
        Ok(Self {
            pool,
            prefix: DEFAULT_PREFIX.into(),
            shared: Arc::default(),
            client,
        })
    }

    /// The same pool, with `prefix` in front of every key.
    pub fn with_prefix(self, prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into().into(),
            ..self
        }
    }

    /// The prefix in front of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key `{prefix}:{suffix}`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// Runs `op` on the shared connection, within [`COMMAND_TIMEOUT`] overall.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.connection().await?;
            op(conn).await.map_err(|e| {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
                {
                    self.forget_connection();
                }
                unavailable(e)
            })
        };
        tokio::time::timeout(COMMAND_TIMEOUT, attempt)
            .await
            .map_err(|_| {
                self.forget_connection();
                unavailable(format!("no answer within {COMMAND_TIMEOUT:?}"))
            })?
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        // The guarded value is a handle that is only replaced whole: poisoning cannot corrupt it.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared connection, taken from the pool on first use or after a failure.
    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(conn) = self.shared().as_ref() {
            return Ok(conn.clone());
        }
        let conn = Connection::take(self.pool.get().await.map_err(unavailable)?);
        *self.shared() = Some(conn.clone());
        Ok(conn)
    }

    fn forget_connection(&self) {
        *self.shared() = None;
    }

    /// Closes the pool: idle connections are dropped and no new ones are handed out.
    pub fn close(&self) {
        self.forget_connection();
        self.pool.close();
    }

    /// A new dedicated publish/subscribe connection (outside the pool: a subscribed connection
    /// can run no other command), opened within [`COMMAND_TIMEOUT`].
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, StoreError> {
        tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| unavailable(format!("no answer within {COMMAND_TIMEOUT:?}")))?
            .map_err(unavailable)
    }

    /// Sends one `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(drop)
    }
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("prefix", &self.prefix)
            .field("status", &self.pool.status())
            .finish()
    }
}

/// A Redis or pool failure as the domain sees it.
pub(crate) fn unavailable(reason: impl fmt::Display) -> StoreError {
    StoreError::unavailable("redis", reason)
}
