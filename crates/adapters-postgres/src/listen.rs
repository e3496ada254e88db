//! A dedicated `LISTEN` connection (outside the pool) that notices a dead connection and
//! reconnects with backoff: the transport of every cross-node wake-up keel takes from Postgres
//! (`keel_jobs` for workers, `keel_board` for the live scoreboard).

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use keel_domain::StoreError;

use crate::error::POSTGRES;

/// Reconnection backoff: first wait, and the longest.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How long a listener waits for a notification before checking its connection is alive (a
/// silently dead connection would otherwise never be noticed).
const KEEPALIVE: Duration = Duration::from_secs(30);

/// A connection listening on one channel.
pub(crate) struct ListenConnection {
    url: String,
    listen: String,
    conn: AsyncPgConnection,
}

impl ListenConnection {
    /// Connects to `database_url` and listens on `channel` (a plain identifier).
    pub async fn open(database_url: &str, channel: &str) -> Result<Self, StoreError> {
        let listen = format!("LISTEN {channel}");
        let conn = connect(database_url, &listen).await?;
        Ok(Self {
            url: database_url.to_owned(),
            listen,
            conn,
        })
    }

    /// The next notification's payload; an error (why) once the connection is lost.
    pub async fn next(&mut self) -> Result<String, String> {
        loop {
            let next = {
                let mut stream = std::pin::pin!(self.conn.notifications_stream());
                tokio::time::timeout(KEEPALIVE, stream.next()).await
            };
            match next {
                Ok(Some(Ok(notification))) => return Ok(notification.payload),
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(None) => return Err("connection closed".to_owned()),
                // Quiet for a while: prove the connection alive (LISTEN again is a no-op).
                Err(_elapsed) => {
                    if let Err(e) = self.conn.batch_execute(&self.listen).await {
                        return Err(e.to_string());
                    }
                }
            }
        }
    }

    /// Replaces a lost connection, retrying with backoff until it listens again. Notifications
    /// sent meanwhile are lost: the caller must make up for them. `what` names the listener in
    /// logs (never the URL: it may carry a password).
    pub async fn reconnect(&mut self, what: &str) {
        let mut wait = RECONNECT_FIRST;
        loop {
            tokio::time::sleep(wait).await;
            match connect(&self.url, &self.listen).await {
                Ok(conn) => {
                    self.conn = conn;
                    tracing::info!(listener = what, "notification listener reconnected");
                    return;
                }
                Err(e) => {
                    tracing::warn!(listener = what, error = %e, "notification listener cannot reconnect");
                    wait = (wait * 2).min(RECONNECT_MAX);
                }
            }
        }
    }
}

async fn connect(database_url: &str, listen: &str) -> Result<AsyncPgConnection, StoreError> {
    let mut conn = AsyncPgConnection::establish(database_url)
        .await
        .map_err(|e| StoreError::unavailable(POSTGRES, e))?;
    conn.batch_execute(listen)
        .await
        .map_err(|e| StoreError::unavailable(POSTGRES, e))?;
    Ok(conn)
}
