//! Wake-ups of idle workers: a generation counter bumped by local changes and, with a listener,
//! by `NOTIFY keel_jobs` from any node (the `jobs_notify_available` trigger).
//!
//! The listener holds one dedicated connection (outside the pool) doing `LISTEN keel_jobs`. When
//! that connection drops it reconnects with backoff and bumps the generation once listening
//! again, since notifications sent meanwhile were lost. Workers poll as well, so a wake-up is
//! an optimisation of latency, never a condition of progress.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use keel_domain::StoreError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::POSTGRES;

const LISTEN: &str = "LISTEN keel_jobs";

/// Reconnection backoff of the listener: first wait, and the longest.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How long the listener waits for a notification before checking its connection is alive (a
/// silently dead connection would otherwise never be noticed).
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The shared wake-up counter.
#[derive(Debug)]
pub(super) struct Wakeups(watch::Sender<u64>);

impl Wakeups {
    pub fn new() -> Self {
        Self(watch::Sender::new(0))
    }

    /// Current generation.
    pub fn generation(&self) -> u64 {
        *self.0.borrow()
    }

    /// New work may be due.
    pub fn bump(&self) {
        self.0.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Returns once the generation differs from `seen`.
    pub async fn changed(&self, seen: u64) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this only ends when the generation moved.
        let _ = rx.wait_for(|g| *g != seen).await;
    }
}

/// The listener task; aborted when dropped (with the last clone of its queue).
#[derive(Debug)]
pub(super) struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connect(database_url: &str) -> Result<AsyncPgConnection, StoreError> {
    let mut conn = AsyncPgConnection::establish(database_url)
        .await
        .map_err(|e| StoreError::unavailable(POSTGRES, e))?;
    conn.batch_execute(LISTEN)
        .await
        .map_err(|e| StoreError::unavailable(POSTGRES, e))?;
    Ok(conn)
}

impl Listener {
    /// Connects and starts listening; fails if the first connection cannot be opened.
    pub async fn start(
        database_url: &str,
        wakeups: std::sync::Arc<Wakeups>,
    ) -> Result<Self, StoreError> {
        let conn = connect(database_url).await?;
        let url = database_url.to_owned();
        Ok(Self(tokio::spawn(listen(url, conn, wakeups))))
    }
}

/// Runs until aborted: forwards notifications, reconnecting whenever the connection is lost.
async fn listen(url: String, mut conn: AsyncPgConnection, wakeups: std::sync::Arc<Wakeups>) {
    loop {
        let lost = serve(&mut conn, &wakeups).await;
        // Never log the URL: it may carry a password.
        tracing::warn!(error = %lost, "job notification listener lost its connection; reconnecting");
        let mut wait = RECONNECT_FIRST;
        conn = loop {
            tokio::time::sleep(wait).await;
            match connect(&url).await {
                Ok(conn) => break conn,
                Err(e) => {
                    tracing::warn!(error = %e, "job notification listener cannot reconnect");
                    wait = (wait * 2).min(RECONNECT_MAX);
                }
            }
        };
        tracing::info!("job notification listener reconnected");
        // Notifications sent while disconnected are lost: wake everyone once.
        wakeups.bump();
    }
}

/// Forwards notifications until the connection fails; returns why.
async fn serve(conn: &mut AsyncPgConnection, wakeups: &Wakeups) -> String {
    loop {
        let next = {
            let mut stream = std::pin::pin!(conn.notifications_stream());
            tokio::time::timeout(KEEPALIVE, stream.next()).await
        };
        match next {
            Ok(Some(Ok(_notification))) => wakeups.bump(),
            Ok(Some(Err(e))) => return e.to_string(),
            Ok(None) => return "connection closed".to_owned(),
            // Quiet for a while: prove the connection alive (LISTEN again is a no-op).
            Err(_elapsed) => {
                if let Err(e) = conn.batch_execute(LISTEN).await {
                    return e.to_string();
                }
            }
        }
    }
}
