//! The audit log in Postgres: the `audit_log` table, append-only by trigger, hash-chained.
//!
//! An append is one transaction (a savepoint inside a caller's transaction): take the audit
//! advisory lock, read the last row's `seq` and `hash`, chain the entry after it with the domain's
//! [`chain::link`], insert. The lock serialises every appender on the database, so the chain never
//! forks, and `seq` is assigned inside it, so a rolled-back append leaves no gap.
//!
//! `jsonb` normalises what it stores (key order, whitespace, number notation); the domain's
//! canonical encoding is indifferent to all of it, so an entry read back hashes as it did when
//! appended. Strings containing `\u0000` cannot be stored in `text` or `jsonb` and fail the append.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::audit::{
    Actor, AuditEntry, AuditLog, AuditPage, AuditQuery, ChainHead, ChainReport, ChainVerifier,
    RecordedEntry, chain,
};

use crate::PgPool;
use crate::error::query_error;
use crate::schema::audit_log::{self as log, dsl};

/// Advisory lock key held (transaction-scoped) by every append: "keel" + 2.
pub const APPEND_LOCK: i64 = 0x6b65_656c_0002;

/// Rows read per query by [`AuditLog::verify`] unless set with [`PgAuditLog::with_verify_batch`].
pub const DEFAULT_VERIFY_BATCH: i64 = 1_000;

/// [`AuditLog`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgAuditLog {
    pool: PgPool,
    verify_batch: i64,
}

impl PgAuditLog {
    /// A log on the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            verify_batch: DEFAULT_VERIFY_BATCH,
        }
    }

    /// Sets how many rows verification reads per query (at least 1); memory stays bounded by it.
    pub fn with_verify_batch(mut self, rows: i64) -> Self {
        self.verify_batch = rows.max(1);
        self
    }
}

#[derive(Queryable)]
struct Row {
    seq: i64,
    actor: String,
    action: String,
    subject: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    reason: Option<String>,
    request_id: Option<String>,
    at: DateTime<Utc>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

type RowColumns = (
    dsl::seq,
    dsl::actor,
    dsl::action,
    dsl::subject,
    dsl::before,
    dsl::after,
    dsl::reason,
    dsl::request_id,
    dsl::at,
    dsl::prev_hash,
    dsl::hash,
);

const ROW_COLUMNS: RowColumns = (
    dsl::seq,
    dsl::actor,
    dsl::action,
    dsl::subject,
    dsl::before,
    dsl::after,
    dsl::reason,
    dsl::request_id,
    dsl::at,
    dsl::prev_hash,
    dsl::hash,
);

/// A stored hash, or the error that says the row is unreadable (the schema forbids it).
fn stored_hash(seq: i64, column: &str, bytes: &[u8]) -> Result<[u8; 32], DieselError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        DieselError::DeserializationError(
            format!("audit_log seq {seq}: {column} is not 32 bytes").into(),
        )
    })
}

impl Row {
    fn into_recorded(self) -> Result<RecordedEntry, StoreError> {
        let prev_hash = stored_hash(self.seq, "prev_hash", &self.prev_hash).map_err(query_error)?;
        let hash = stored_hash(self.seq, "hash", &self.hash).map_err(query_error)?;
        Ok(RecordedEntry {
            seq: self.seq,
            entry: AuditEntry {
                actor: Actor::from_stored(self.actor),
                action: self.action,
                subject: self.subject,
                before: self.before,
                after: self.after,
                reason: self.reason,
                request_id: self.request_id,
                at: self.at,
            },
            prev_hash,
            hash,
        })
    }
}

/// Appends on `conn`, which must be inside a transaction (the advisory lock lasts until its end).
async fn append_on(
    conn: &mut AsyncPgConnection,
    entry: &AuditEntry,
) -> Result<RecordedEntry, DieselError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(APPEND_LOCK)
        .execute(conn)
        .await?;
    // Read after taking the lock: under READ COMMITTED this statement sees every earlier append.
    let last: Option<(i64, Vec<u8>)> = log::table
        .select((dsl::seq, dsl::hash))
        .order(dsl::seq.desc())
        .first(conn)
        .await
        .optional()?;
    let head = match last {
        Some((seq, hash)) => Some(ChainHead {
            seq,
            hash: stored_hash(seq, "hash", &hash)?,
        }),
        None => None,
    };
    let recorded = chain::link(head, entry.clone());
    let e = &recorded.entry;
    diesel::insert_into(log::table)
        .values((
            dsl::seq.eq(recorded.seq),
            dsl::actor.eq(e.actor.as_str()),
            dsl::action.eq(&e.action),
            dsl::subject.eq(&e.subject),
            dsl::before.eq(&e.before),
            dsl::after.eq(&e.after),
            dsl::reason.eq(&e.reason),
            dsl::request_id.eq(&e.request_id),
            dsl::at.eq(e.at),
            dsl::prev_hash.eq(recorded.prev_hash.as_slice()),
            dsl::hash.eq(recorded.hash.as_slice()),
        ))
        .execute(conn)
        .await?;
    Ok(recorded)
}

/// Appends `entry` on `conn`, inside the caller's transaction when there is one (as a savepoint),
/// so a use case can audit what it changes atomically with the change: if the transaction rolls
/// back, the entry and its `seq` vanish with it.
///
/// The append lock is held until the caller's transaction ends and every other append waits for
/// it: append last, just before committing. The caller's transaction must be `READ COMMITTED`
/// (Postgres' default); under a snapshot taken before the lock, the append would miss the newest
/// entry and fail with a conflict.
pub async fn append_in(
    conn: &mut AsyncPgConnection,
    entry: AuditEntry,
) -> Result<RecordedEntry, StoreError> {
    conn.transaction(async |conn| append_on(conn, &entry).await)
        .await
        .map_err(query_error)
}

#[async_trait]
impl AuditLog for PgAuditLog {
    async fn append(&self, entry: AuditEntry) -> Result<RecordedEntry, StoreError> {
        let mut conn = self.pool.get().await?;
        append_in(&mut conn, entry).await
    }

    async fn list(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut select = log::table.select(ROW_COLUMNS).into_boxed();
        if let Some(actor) = &query.actor {
            select = select.filter(dsl::actor.eq(actor.as_str().to_owned()));
        }
        if let Some(action) = &query.action {
            select = select.filter(dsl::action.eq(action.clone()));
        }
        if let Some(subject) = &query.subject {
            select = select.filter(dsl::subject.eq(subject.clone()));
        }
        if let Some(from) = query.from {
            select = select.filter(dsl::at.ge(from));
        }
        if let Some(to) = query.to {
            select = select.filter(dsl::at.lt(to));
        }
        if let Some(cursor) = query.cursor {
            select = select.filter(dsl::seq.lt(cursor.seq()));
        }
        let rows: Vec<Row> = select
            .order(dsl::seq.desc())
            .limit(i64::from(query.fetch_size()))
            .load(&mut conn)
            .await
            .map_err(query_error)?;
        let rows = rows
            .into_iter()
            .map(Row::into_recorded)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AuditPage::from_newest_first(rows, query.limit))
    }

    async fn verify(&self) -> Result<ChainReport, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut verifier = ChainVerifier::new();
        let mut after_seq = 0i64;
        loop {
            // Keyset batches by seq: bounded memory, and each query uses the primary key.
            let rows: Vec<Row> = log::table
                .select(ROW_COLUMNS)
                .filter(dsl::seq.gt(after_seq))
                .order(dsl::seq.asc())
                .limit(self.verify_batch)
                .load(&mut conn)
                .await
                .map_err(query_error)?;
            let full_batch = rows.len() as i64 == self.verify_batch;
            for row in rows {
                let entry = row.into_recorded()?;
                after_seq = entry.seq;
                if verifier.check(&entry).is_err() {
                    return Ok(verifier.report());
                }
            }
            if !full_batch {
                return Ok(verifier.report());
            }
        }
    }
}
