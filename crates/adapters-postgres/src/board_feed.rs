//! The board's change feed over Postgres, for deployments without Redis: the
//! `scoreboard_changes` sequence numbers the changes and `NOTIFY keel_board` carries them to
//! every node (migration `000010_scoreboard_changes`).

use async_trait::async_trait;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use keel_domain::StoreError;
use keel_domain::scoreboard::{BoardFeed, BoardSignal, BoardSubscription};

use crate::PgPool;
use crate::error::query_error;
use crate::listen::ListenConnection;

/// The channel the changes are notified on.
pub const CHANNEL: &str = "keel_board";

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Number {
    fn number(&self) -> u64 {
        // The sequence starts at 1: never negative.
        u64::try_from(self.n).unwrap_or(0)
    }
}

/// [`BoardFeed`] shared through Postgres by every node on one database.
#[derive(Debug, Clone)]
pub struct PgBoardFeed {
    pool: PgPool,
    database_url: String,
}

impl PgBoardFeed {
    /// Publishes through `pool`; subscriptions open their own connection to `database_url`.
    pub fn new(pool: PgPool, database_url: &str) -> Self {
        Self {
            pool,
            database_url: database_url.to_owned(),
        }
    }
}

#[async_trait]
impl BoardFeed for PgBoardFeed {
    async fn publish(&self, floor: u64) -> Result<u64, StoreError> {
        let floor = i64::try_from(floor).unwrap_or(i64::MAX);
        let mut conn = self.pool.get().await?;
        let row: Number = diesel::sql_query("SELECT scoreboard_publish_change($1) AS n")
            .bind::<BigInt, _>(floor)
            .get_result(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(row.number())
    }

    async fn current(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Number = diesel::sql_query(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM scoreboard_changes",
        )
        .get_result(&mut conn)
        .await
        .map_err(query_error)?;
        Ok(row.number())
    }

    async fn subscribe(&self) -> Result<Box<dyn BoardSubscription>, StoreError> {
        let conn = ListenConnection::open(&self.database_url, CHANNEL).await?;
        Ok(Box::new(PgBoardSubscription(conn)))
    }
}

struct PgBoardSubscription(ListenConnection);

#[async_trait]
impl BoardSubscription for PgBoardSubscription {
    async fn next(&mut self) -> Option<BoardSignal> {
        loop {
            match self.0.next().await {
                Ok(payload) => match payload.parse() {
                    Ok(number) => return Some(BoardSignal::Changed(number)),
                    Err(_) => tracing::warn!(%payload, "ignored a malformed board change"),
                },
                Err(lost) => {
                    tracing::warn!(error = %lost, "board change listener lost its connection");
                    self.0.reconnect("board").await;
                    // Changes notified while disconnected were lost.
                    return Some(BoardSignal::Resync);
                }
            }
        }
    }
}
