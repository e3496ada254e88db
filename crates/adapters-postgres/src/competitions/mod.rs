//! Competitions and registrations in Postgres.
//!
//! - Registrations are group-committed per competition (see [`batch`]): concurrent calls for one
//!   competition on this node share one transaction that locks the competition row
//!   (`SELECT … FOR UPDATE`), inserts the rows that fit with `INSERT … ON CONFLICT DO NOTHING`,
//!   stores each receipt, enqueues the jobs through `enqueue_in` and raises `seats_taken` once.
//!   A lone registration is a batch of one.
//! - Withdrawals and releases lock the competition row first (the same order as registrations,
//!   so they cannot deadlock), delete the row, decrement the count and delete the pending
//!   reminder job, in one transaction.
//! - The schema restates the rules: `CHECK (seats_taken BETWEEN 0 AND capacity)` and
//!   `UNIQUE (competition_id, user_id)` (see `migrations/…_competitions`).

mod batch;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::competitions::{
    Competition, CompetitionId, CompetitionStore, NewRegistration, RegisterOutcome, Registration,
    RegistrationId, RegistrationReceipt, SendReminder, WithdrawOutcome,
};
use keel_domain::identity::user::UserId;
use keel_domain::jobs::{JobKind, JobState, NewJob};
use uuid::Uuid;

pub use self::batch::BatchStats;
use self::batch::Batcher;
use crate::PgPool;
use crate::error::query_error;
use crate::schema::jobs as jobs_table;

diesel::table! {
    /// Competitions with their seat count.
    competitions (id) {
        /// Identity.
        id -> Uuid,
        /// Title.
        title -> Text,
        /// Seats in all.
        capacity -> Integer,
        /// Seats held by registrations.
        seats_taken -> Integer,
        /// Registrations close at this instant.
        registration_deadline -> Timestamptz,
        /// Start.
        starts_at -> Timestamptz,
        /// Author's account id.
        created_by -> Uuid,
        /// Creation time.
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// One row per seat taken.
    registrations (id) {
        /// Identity.
        id -> Uuid,
        /// The competition.
        competition_id -> Uuid,
        /// The registrant; NULL once the account was deleted.
        user_id -> Nullable<Uuid>,
        /// When it was made.
        registered_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(competitions, registrations);

type CompetitionRow = (
    Uuid,
    String,
    i32,
    i32,
    DateTime<Utc>,
    DateTime<Utc>,
    Uuid,
    DateTime<Utc>,
);

const COMPETITION_COLUMNS: (
    competitions::id,
    competitions::title,
    competitions::capacity,
    competitions::seats_taken,
    competitions::registration_deadline,
    competitions::starts_at,
    competitions::created_by,
    competitions::created_at,
) = (
    competitions::id,
    competitions::title,
    competitions::capacity,
    competitions::seats_taken,
    competitions::registration_deadline,
    competitions::starts_at,
    competitions::created_by,
    competitions::created_at,
);

fn to_u32(value: i32, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {value}")))
}

fn into_competition(row: CompetitionRow) -> Result<Competition, StoreError> {
    let (
        id,
        title,
        capacity,
        seats_taken,
        registration_deadline,
        starts_at,
        created_by,
        created_at,
    ) = row;
    Ok(Competition {
        id: CompetitionId(id),
        title,
        capacity: to_u32(capacity, "capacity")?,
        seats_taken: to_u32(seats_taken, "seats_taken")?,
        registration_deadline,
        starts_at,
        created_by: UserId(created_by),
        created_at,
    })
}

/// Deletes the pending reminders of `registrations` (a running one skips by itself).
async fn cancel_reminders(
    conn: &mut AsyncPgConnection,
    registrations: &[Uuid],
) -> Result<usize, diesel::result::Error> {
    if registrations.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = registrations.iter().map(Uuid::to_string).collect();
    diesel::delete(
        jobs_table::table
            .filter(jobs_table::kind.eq(SendReminder::KIND))
            .filter(jobs_table::unique_key.eq_any(keys))
            .filter(jobs_table::state.eq(JobState::Available.as_str())),
    )
    .execute(conn)
    .await
}

/// Locks competitions `ids` in id order (the order every writer uses).
async fn lock_competitions(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)>, diesel::result::Error> {
    competitions::table
        .filter(competitions::id.eq_any(ids))
        .order(competitions::id)
        .select((
            competitions::id,
            competitions::registration_deadline,
            competitions::starts_at,
        ))
        .for_update()
        .load(conn)
        .await
}

async fn withdraw_on(
    conn: &mut AsyncPgConnection,
    competition: CompetitionId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<WithdrawOutcome, diesel::result::Error> {
    let locked = lock_competitions(conn, &[competition.0]).await?;
    match locked.into_iter().next() {
        None => return Ok(WithdrawOutcome::NotFound),
        Some((_, deadline, _)) if deadline <= now => return Ok(WithdrawOutcome::Closed),
        Some(_) => {}
    }
    let removed: Option<Uuid> = diesel::delete(
        registrations::table
            .filter(registrations::competition_id.eq(competition.0))
            .filter(registrations::user_id.eq(user.as_uuid())),
    )
    .returning(registrations::id)
    .get_result(conn)
    .await
    .optional()?;
    let Some(id) = removed else {
        return Ok(WithdrawOutcome::NotRegistered);
    };
    diesel::update(competitions::table.filter(competitions::id.eq(competition.0)))
        .set(competitions::seats_taken.eq(competitions::seats_taken - 1))
        .execute(conn)
        .await?;
    cancel_reminders(conn, &[id]).await?;
    Ok(WithdrawOutcome::Withdrawn {
        registration: RegistrationId(id),
    })
}

/// Frees the seats of competitions not started at `now` held by `user`'s rows (if given) and by
/// rows already anonymised by an account deletion (SET NULL).
async fn release_on(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    now: DateTime<Utc>,
) -> Result<u64, diesel::result::Error> {
    // No user: an empty `= ANY('{}')`, so only the anonymised rows match.
    let users: Vec<Uuid> = user.map(UserId::as_uuid).into_iter().collect();
    let held = || {
        registrations::table
            .filter(
                registrations::user_id
                    .eq_any(users.clone())
                    .or(registrations::user_id.is_null()),
            )
            .filter(
                registrations::competition_id.eq_any(
                    competitions::table
                        .filter(competitions::starts_at.gt(now))
                        .select(competitions::id),
                ),
            )
    };
    let mut ids: Vec<Uuid> = held()
        .select(registrations::competition_id)
        .distinct()
        .load(conn)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    ids.sort_unstable();
    lock_competitions(conn, &ids).await?;
    // Only rows of the competitions locked above (in id order): a row anonymised meanwhile in
    // another competition waits for the next sweep rather than taking its lock out of order.
    let locked = held().filter(registrations::competition_id.eq_any(ids.clone()));
    let removed: Vec<(Uuid, Uuid)> = diesel::delete(locked)
        .returning((registrations::id, registrations::competition_id))
        .get_results(conn)
        .await?;
    let mut per_competition: Vec<Uuid> = removed.iter().map(|(_, c)| *c).collect();
    per_competition.sort_unstable();
    for chunk in per_competition.chunk_by(|a, b| a == b) {
        let (Some(id), Ok(n)) = (chunk.first(), i32::try_from(chunk.len())) else {
            continue;
        };
        diesel::update(competitions::table.filter(competitions::id.eq(*id)))
            .set(competitions::seats_taken.eq(competitions::seats_taken - n))
            .execute(conn)
            .await?;
    }
    let registration_ids: Vec<Uuid> = removed.iter().map(|(r, _)| *r).collect();
    cancel_reminders(conn, &registration_ids).await?;
    Ok(removed.len() as u64)
}

/// [`CompetitionStore`] on Postgres.
///
/// Clones share one [`batch`] coalescer, so concurrent registrations for one competition made
/// through any clone commit together (group commit).
#[derive(Debug, Clone)]
pub struct PgCompetitionStore {
    pool: PgPool,
    batcher: Arc<Batcher>,
}

impl PgCompetitionStore {
    /// A store on the database behind `pool`; registrations enqueue their jobs in the same
    /// database's `jobs` table.
    pub fn new(pool: PgPool) -> Self {
        Self {
            batcher: Arc::new(Batcher::new(pool.clone())),
            pool,
        }
    }

    /// Counters of the registration batches this store (and its clones) committed so far.
    pub fn batch_stats(&self) -> BatchStats {
        self.batcher.stats()
    }
}

#[async_trait]
impl CompetitionStore for PgCompetitionStore {
    async fn create(&self, c: &Competition) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        let capacity = i32::try_from(c.capacity)
            .map_err(|_| StoreError::Conflict("capacity out of range".into()))?;
        diesel::insert_into(competitions::table)
            .values((
                competitions::id.eq(c.id.0),
                competitions::title.eq(&c.title),
                competitions::capacity.eq(capacity),
                competitions::seats_taken.eq(0),
                competitions::registration_deadline.eq(c.registration_deadline),
                competitions::starts_at.eq(c.starts_at),
                competitions::created_by.eq(c.created_by.as_uuid()),
                competitions::created_at.eq(c.created_at),
            ))
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    async fn get(&self, id: CompetitionId) -> Result<Option<Competition>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<CompetitionRow> = competitions::table
            .filter(competitions::id.eq(id.0))
            .select(COMPETITION_COLUMNS)
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        row.map(into_competition).transpose()
    }

    async fn list(
        &self,
        after: Option<(DateTime<Utc>, CompetitionId)>,
        limit: u32,
    ) -> Result<Vec<Competition>, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut query = competitions::table
            .select(COMPETITION_COLUMNS)
            .order((competitions::created_at.desc(), competitions::id.desc()))
            .limit(i64::from(limit))
            .into_boxed();
        if let Some((at, id)) = after {
            query = query.filter(
                competitions::created_at.lt(at).or(competitions::created_at
                    .eq(at)
                    .and(competitions::id.lt(id.0))),
            );
        }
        let rows: Vec<CompetitionRow> = query.load(&mut conn).await.map_err(query_error)?;
        rows.into_iter().map(into_competition).collect()
    }

    /// The receipt commits in the registration's transaction (`complete_in`).
    async fn register<'a>(
        &self,
        registration: &NewRegistration,
        jobs: &[NewJob],
        receipt: Option<&'a dyn RegistrationReceipt>,
        now: DateTime<Utc>,
    ) -> Result<RegisterOutcome, StoreError> {
        self.batcher
            .register(registration, jobs, receipt, now)
            .await
    }

    async fn withdraw(
        &self,
        competition: CompetitionId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<WithdrawOutcome, StoreError> {
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| withdraw_on(conn, competition, user, now).await)
            .await
            .map_err(query_error)
    }

    async fn registration(&self, id: RegistrationId) -> Result<Option<Registration>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<(Uuid, Uuid, Option<Uuid>, DateTime<Utc>)> = registrations::table
            .filter(registrations::id.eq(id.0))
            .select((
                registrations::id,
                registrations::competition_id,
                registrations::user_id,
                registrations::registered_at,
            ))
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        Ok(row.map(
            |(id, competition_id, user_id, registered_at)| Registration {
                id: RegistrationId(id),
                competition_id: CompetitionId(competition_id),
                user_id: user_id.map(UserId),
                registered_at,
            },
        ))
    }

    async fn registration_count(&self, competition: CompetitionId) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        let n: i64 = registrations::table
            .filter(registrations::competition_id.eq(competition.0))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(query_error)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative count".into()))
    }

    async fn release_user(&self, user: UserId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| release_on(conn, Some(user), now).await)
            .await
            .map_err(query_error)
    }

    async fn release_anonymised(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| release_on(conn, None, now).await)
            .await
            .map_err(query_error)
    }
}
