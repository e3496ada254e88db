//! Embedding keel's idempotency store on Postgres: migrate, then store a response in the same
//! transaction as the work it answers, and replay it.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run -p keel-adapters-postgres --example pg_idempotency`

use chrono::Utc;
use diesel_async::AsyncConnection;
use keel_adapters_postgres::idempotency::complete_in;
use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_adapters_postgres::{PgIdempotencyStore, PgPool};
use keel_domain::StoreError;
use keel_domain::idempotency::{
    ClaimOutcome, IdempotencyKey, IdempotencyPolicy, IdempotencyStore, RequestFingerprint, Scope,
    StoredResponse,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL to a Postgres database")?;
    run_pending_migrations(&url).await?;
    let pool = PgPool::connect(&url, 4).await?;
    let store = PgIdempotencyStore::new(pool.clone());

    let scope = Scope::user(format!("example-{}", std::process::id()));
    let key = IdempotencyKey::parse("signup-1")?;
    let fingerprint = RequestFingerprint::compute("POST", "/signups", scope.as_str(), b"{}");
    let policy = IdempotencyPolicy::default();

    for attempt in 1..=2 {
        match store
            .claim(&scope, &key, &fingerprint, policy, Utc::now())
            .await?
        {
            ClaimOutcome::Claimed(claim) => {
                let response = StoredResponse {
                    status: 201,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: br#"{"signed_up":true}"#.to_vec(),
                };
                // Business rows and the stored response commit together, or not at all.
                let mut conn = pool.get().await?;
                conn.transaction(async |conn| {
                    // ... insert the business rows on `conn` here ...
                    complete_in(conn, &claim, &response)
                        .await
                        .map_err(TxError::Store)?;
                    Ok::<_, TxError>(())
                })
                .await
                .map_err(|e| e.to_string())?;
                println!("attempt {attempt}: executed, 201 stored in the same transaction");
            }
            ClaimOutcome::Replay(response) => {
                println!(
                    "attempt {attempt}: replayed {} {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                );
            }
            other => println!("attempt {attempt}: {other:?}"),
        }
    }
    Ok(())
}

#[derive(Debug)]
enum TxError {
    Db(diesel::result::Error),
    Store(StoreError),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Db(e) => write!(f, "database: {e}"),
            Self::Store(e) => write!(f, "store: {e}"),
        }
    }
}
