//! Wake-ups of idle workers: a generation counter bumped by local changes and, with a listener,
//! by `NOTIFY keel_jobs` from any node (the `jobs_notify_available` trigger).
//!
//! The listener holds one dedicated connection (outside the pool) doing `LISTEN keel_jobs`. When
//! that connection drops it reconnects with backoff and bumps the generation once listening
//! again, since notifications sent meanwhile were lost. Workers poll as well, so a wake-up is
//! an optimisation of latency, never a condition of progress.

use keel_domain::StoreError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::listen::ListenConnection;

/// The channel the `jobs_notify_available` trigger notifies.
const CHANNEL: &str = "keel_jobs";

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

impl Listener {
    /// Connects and starts listening; fails if the first connection cannot be opened.
    pub async fn start(
        database_url: &str,
        wakeups: std::sync::Arc<Wakeups>,
    ) -> Result<Self, StoreError> {
        let conn = ListenConnection::open(database_url, CHANNEL).await?;
        Ok(Self(tokio::spawn(listen(conn, wakeups))))
    }
}

/// Runs until aborted: bumps the generation on every notification, reconnecting whenever the
/// connection is lost.
async fn listen(mut conn: ListenConnection, wakeups: std::sync::Arc<Wakeups>) {
    loop {
        match conn.next().await {
            Ok(_payload) => wakeups.bump(),
            Err(lost) => {
                tracing::warn!(error = %lost, "job notification listener lost its connection; reconnecting");
                conn.reconnect("jobs").await;
                // Notifications sent while disconnected are lost: wake everyone once.
                wakeups.bump();
            }
        }
    }
}
