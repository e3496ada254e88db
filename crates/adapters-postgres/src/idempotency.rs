//! Idempotency keys in Postgres: the durable record behind every `Idempotency-Key`.
//!
//! A claim is one short transaction: insert the key if absent, otherwise lock the existing row
//! (`FOR UPDATE`) and apply the domain's [`decide`] rule to it. Completion is a conditional update
//! on the claim id, and [`complete_in`] lets a use case store the response in the same
//! transaction as its business rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::idempotency::{
    Claim, ClaimOutcome, Decision, IdempotencyKey, IdempotencyPolicy, IdempotencyRecord,
    IdempotencyStore, RecordState, RequestFingerprint, Scope, StoredResponse, decide,
};
use uuid::Uuid;

use crate::PgPool;
use crate::error::query_error;
use crate::schema::idempotency_keys::{self as keys, dsl};

const IN_FLIGHT: &str = "in_flight";
const COMPLETED: &str = "completed";
/// Rows deleted per statement by the purge, so it never holds long locks on a big table.
const PURGE_BATCH: i64 = 5_000;

/// [`IdempotencyStore`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgIdempotencyStore {
    pool: PgPool,
}

impl PgIdempotencyStore {
    /// A store on the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(Queryable)]
struct Row {
    fingerprint: Vec<u8>,
    claim_id: Uuid,
    state: String,
    lease_until: Option<DateTime<Utc>>,
    response_status: Option<i16>,
    response_headers: Option<serde_json::Value>,
    response_body: Option<Vec<u8>>,
    expires_at: DateTime<Utc>,
}

impl Row {
    fn into_record(self) -> Result<IdempotencyRecord, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("idempotency row: {what}"));
        let fingerprint = RequestFingerprint::from_bytes(&self.fingerprint)
            .ok_or_else(|| corrupt("fingerprint"))?;
        let state = match self.state.as_str() {
            IN_FLIGHT => RecordState::InFlight {
                claim_id: self.claim_id,
                lease_until: self.lease_until.ok_or_else(|| corrupt("lease"))?,
            },
            COMPLETED => RecordState::Completed(StoredResponse {
                status: self
                    .response_status
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or_else(|| corrupt("status"))?,
                headers: self
                    .response_headers
                    .and_then(|h| serde_json::from_value(h).ok())
                    .ok_or_else(|| corrupt("headers"))?,
                body: self.response_body.ok_or_else(|| corrupt("body"))?,
            }),
            other => return Err(corrupt(other)),
        };
        Ok(IdempotencyRecord {
            fingerprint,
            state,
            expires_at: self.expires_at,
        })
    }
}

type RowColumns = (
    dsl::fingerprint,
    dsl::claim_id,
    dsl::state,
    dsl::lease_until,
    dsl::response_status,
    dsl::response_headers,
    dsl::response_body,
    dsl::expires_at,
);

const ROW_COLUMNS: RowColumns = (
    dsl::fingerprint,
    dsl::claim_id,
    dsl::state,
    dsl::lease_until,
    dsl::response_status,
    dsl::response_headers,
    dsl::response_body,
    dsl::expires_at,
);

/// Claims a key on `conn` (inside the caller's transaction when there is one).
async fn claim_on(
    conn: &mut AsyncPgConnection,
    scope: &Scope,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
    policy: IdempotencyPolicy,
    now: DateTime<Utc>,
) -> Result<ClaimOutcome, diesel::result::Error> {
    let claim_id = Uuid::new_v4();
    let claim = Claim {
        scope: scope.clone(),
        key: key.clone(),
        fingerprint: *fingerprint,
        claim_id,
        expires_at: now + policy.ttl,
    };
    let in_flight = (
        dsl::fingerprint.eq(fingerprint.as_bytes().to_vec()),
        dsl::claim_id.eq(claim_id),
        dsl::state.eq(IN_FLIGHT),
        dsl::lease_until.eq(Some(now + policy.lease)),
        dsl::response_status.eq(None::<i16>),
        dsl::response_headers.eq(None::<serde_json::Value>),
        dsl::response_body.eq(None::<Vec<u8>>),
        dsl::created_at.eq(now),
        dsl::expires_at.eq(now + policy.ttl),
    );
    let inserted = diesel::insert_into(keys::table)
        .values((
            dsl::scope.eq(scope.as_str()),
            dsl::key.eq(key.as_str()),
            in_flight.clone(),
        ))
        .on_conflict((dsl::scope, dsl::key))
        .do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(ClaimOutcome::Claimed(claim));
    }
    // The key exists (its inserter has committed: ON CONFLICT waited for it). Lock it and decide.
    let this_key = dsl::scope.eq(scope.as_str()).and(dsl::key.eq(key.as_str()));
    let row: Option<Row> = keys::table
        .filter(this_key)
        .select(ROW_COLUMNS)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    // An unreadable row would make the key unusable forever: treat it as absent and overwrite it.
    let record = row.map(Row::into_record).transpose().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "overwriting an unreadable idempotency record");
        None
    });
    Ok(match decide(record.as_ref(), fingerprint, now) {
        Decision::Replay(response) => ClaimOutcome::Replay(response),
        Decision::Mismatch => ClaimOutcome::Mismatch,
        Decision::InFlight { retry_after } => ClaimOutcome::InFlight { retry_after },
        Decision::Claim => {
            let updated = diesel::update(keys::table.filter(this_key))
                .set(in_flight)
                .execute(conn)
                .await?;
            if updated == 1 {
                ClaimOutcome::Claimed(claim)
            } else {
                // Purged between the insert and the lock; the caller's retry inserts afresh.
                return Err(diesel::result::Error::RollbackTransaction);
            }
        }
    })
}

/// Stores the final response of `claim` on `conn`.
///
/// Call it inside a use case's transaction so the response and the business rows commit together:
/// a crash can then never leave rows without their stored response, or the reverse.
pub async fn complete_in(
    conn: &mut AsyncPgConnection,
    claim: &Claim,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    let headers =
        serde_json::to_value(&response.headers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let status =
        i16::try_from(response.status).map_err(|_| StoreError::Corrupt("status".into()))?;
    let updated = diesel::update(
        keys::table.filter(
            dsl::scope
                .eq(claim.scope.as_str())
                .and(dsl::key.eq(claim.key.as_str()))
                .and(dsl::claim_id.eq(claim.claim_id))
                .and(dsl::state.eq(IN_FLIGHT)),
        ),
    )
    .set((
        dsl::state.eq(COMPLETED),
        dsl::lease_until.eq(None::<DateTime<Utc>>),
        dsl::response_status.eq(Some(status)),
        dsl::response_headers.eq(Some(headers)),
        dsl::response_body.eq(Some(response.body.clone())),
    ))
    .execute(conn)
    .await
    .map_err(query_error)?;
    if updated == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "claim on key {:?} was lost",
            claim.key.as_str()
        )))
    }
}

#[async_trait]
impl IdempotencyStore for PgIdempotencyStore {
    async fn claim(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        policy: IdempotencyPolicy,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut last_error = None;
        // One retry covers the row being purged between our insert and our lock.
        for _ in 0..2 {
            let result = conn
                .transaction(async |conn| {
                    claim_on(conn, scope, key, fingerprint, policy, now).await
                })
                .await;
            match result {
                Ok(outcome) => return Ok(outcome),
                Err(diesel::result::Error::RollbackTransaction) => last_error = None,
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        Err(last_error.map_or_else(
            || StoreError::Conflict("idempotency key kept vanishing".into()),
            query_error,
        ))
    }

    async fn complete(&self, claim: &Claim, response: &StoredResponse) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        complete_in(&mut conn, claim, response).await
    }

    async fn abandon(&self, claim: &Claim) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        diesel::delete(
            keys::table.filter(
                dsl::scope
                    .eq(claim.scope.as_str())
                    .and(dsl::key.eq(claim.key.as_str()))
                    .and(dsl::claim_id.eq(claim.claim_id))
                    .and(dsl::state.eq(IN_FLIGHT)),
            ),
        )
        .execute(&mut conn)
        .await
        .map_err(query_error)?;
        Ok(())
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut purged = 0u64;
        loop {
            // ctid batches keep each DELETE short; the index on expires_at finds them.
            let deleted = diesel::sql_query(
                "DELETE FROM idempotency_keys WHERE ctid IN \
                 (SELECT ctid FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)",
            )
            .bind::<diesel::sql_types::Timestamptz, _>(now)
            .bind::<diesel::sql_types::BigInt, _>(PURGE_BATCH)
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
            purged += deleted as u64;
            if (deleted as i64) < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }
}
