//! The durable job queue in Postgres: the `jobs` table, leased with `FOR UPDATE SKIP LOCKED`.
//!
//! - [`enqueue_in`] stores a job on the caller's connection, inside its transaction: the
//!   transactional outbox, so a job exists iff the business rows it belongs to committed (and its
//!   wake-up, a `NOTIFY` from the `jobs` trigger, is only delivered on commit).
//! - A claim is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)`: concurrent workers
//!   skip each other's rows instead of waiting, and each claimed job gets a fresh lease id.
//! - Every outcome is a conditional update on (id, `running`, lease id): a worker whose lease was
//!   taken over gets [`StoreError::Conflict`] and changes nothing.
//! - Every time written comes from the caller (`now` arguments), never from the database clock.

mod completions;
mod listener;
mod rows;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::jobs::{
    AfterFailure, AttemptError, ClaimRequest, ClaimedJob, EnqueueOutcome, Job, JobChange, JobCount,
    JobFilter, JobId, JobQueue, JobState, NewJob,
};
use uuid::Uuid;

use self::completions::{Completion, Completions, Finished, is_lease_lost};
use self::listener::{Listener, Wakeups};
use self::rows::{JOB_COLUMNS, JobRow, into_claimed, into_jobs};
use crate::PgPool;
use crate::error::query_error;
use crate::group::{GroupStats, Grouper};
use crate::schema::jobs::{self as jobs_table, dsl};

/// Rows deleted per statement by the purge, so it never holds long locks on a big table.
const PURGE_BATCH: i64 = 5_000;

/// The error recorded for an attempt whose worker stopped renewing its lease.
pub const LEASE_EXPIRED: &str = "lease expired: the worker stopped responding";

/// [`JobQueue`] on Postgres; cheap to clone (clones share the pool and the wake-up listener).
#[derive(Debug, Clone)]
pub struct PgJobQueue {
    pool: PgPool,
    wakeups: Arc<Wakeups>,
    /// The group commit of completions.
    completions: Arc<Grouper<Completions>>,
    /// Kept for its `Drop`: the listener stops with the last clone.
    _listener: Option<Arc<Listener>>,
}

impl PgJobQueue {
    /// A queue on the database behind `pool`, without a notification listener: wake-ups come
    /// only from changes made through this queue (and its clones); workers poll for the rest.
    pub fn new(pool: PgPool) -> Self {
        Self {
            completions: Arc::new(Grouper::new(Completions { pool: pool.clone() })),
            pool,
            wakeups: Arc::new(Wakeups::new()),
            _listener: None,
        }
    }

    /// A queue that also listens for `NOTIFY keel_jobs` on a dedicated connection to
    /// `database_url`, so idle workers wake as soon as any node enqueues work. The listener
    /// reconnects by itself and stops when the last clone of the queue is dropped. Must be
    /// called inside a tokio runtime.
    pub async fn with_listener(pool: PgPool, database_url: &str) -> Result<Self, StoreError> {
        let wakeups = Arc::new(Wakeups::new());
        let listener = Listener::start(database_url, wakeups.clone()).await?;
        Ok(Self {
            _listener: Some(Arc::new(listener)),
            wakeups,
            ..Self::new(pool)
        })
    }

    /// The group commit of completions so far: groups run, jobs completed in them, largest group.
    pub fn completion_stats(&self) -> GroupStats {
        self.completions.stats()
    }
}

/// Stores `job` on `conn`, or finds the existing job of the same kind and uniqueness key.
///
/// Call it inside a use case's transaction (`conn.transaction(…)`) so the job commits or rolls
/// back with the business rows: the transactional outbox. A duplicate does not abort the
/// transaction (`ON CONFLICT DO NOTHING`). Workers of every node with a listening queue are
/// woken when the transaction commits.
pub async fn enqueue_in(
    conn: &mut AsyncPgConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<EnqueueOutcome, diesel::result::Error> {
    // The job holding the key may be deleted between our insert and our lookup (purged, cancelled
    // by an admin): then the key is free again and the insert is tried once more.
    for _ in 0..ENQUEUE_TRIES {
        if let Some(id) = insert_unless_duplicate(conn, job, now).await? {
            return Ok(EnqueueOutcome::Enqueued(JobId(id)));
        }
        // Only a uniqueness key can conflict; ON CONFLICT waited for its holder to commit.
        let existing: Option<Uuid> = jobs_table::table
            .filter(dsl::kind.eq(&job.kind))
            .filter(dsl::unique_key.eq(job.unique_key.as_deref()))
            .select(dsl::id)
            .first(conn)
            .await
            .optional()?;
        if let Some(id) = existing {
            return Ok(EnqueueOutcome::Duplicate(JobId(id)));
        }
    }
    Err(diesel::result::Error::NotFound)
}

/// How often [`enqueue_in`] retries when the job holding its key vanishes under it.
const ENQUEUE_TRIES: usize = 3;

/// Inserts `job`; `None` when a job of its kind and uniqueness key already exists.
async fn insert_unless_duplicate(
    conn: &mut AsyncPgConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, diesel::result::Error> {
    let max_attempts = i32::try_from(job.max_attempts).unwrap_or(i32::MAX);
    diesel::insert_into(jobs_table::table)
        .values((
            dsl::id.eq(Uuid::now_v7()),
            dsl::kind.eq(&job.kind),
            dsl::payload.eq(&job.payload),
            dsl::priority.eq(job.priority),
            dsl::state.eq(JobState::Available.as_str()),
            dsl::attempt.eq(0),
            dsl::max_attempts.eq(max_attempts),
            dsl::run_at.eq(job.run_at),
            dsl::unique_key.eq(job.unique_key.as_deref()),
            dsl::created_at.eq(now),
        ))
        .on_conflict((dsl::kind, dsl::unique_key))
        .filter_target(dsl::unique_key.is_not_null())
        .do_nothing()
        .returning(dsl::id)
        .get_result(conn)
        .await
        .optional()
}

/// Sets of columns for a job leaving `running`.
type Unlock = (
    diesel::dsl::Eq<dsl::locked_by, Option<String>>,
    diesel::dsl::Eq<dsl::locked_until, Option<DateTime<Utc>>>,
    diesel::dsl::Eq<dsl::lease_id, Option<Uuid>>,
);

fn unlock() -> Unlock {
    (
        dsl::locked_by.eq(None::<String>),
        dsl::locked_until.eq(None::<DateTime<Utc>>),
        dsl::lease_id.eq(None::<Uuid>),
    )
}

/// Whether a conditional update on a held lease found its row.
fn lease_held(updated: usize, job: Uuid) -> Result<(), StoreError> {
    if updated == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!("lease on job {job} was lost")))
    }
}

/// The rows of `job` if `lease` still holds it.
fn leased(job: Uuid, lease: Uuid) -> LeasedFilter {
    jobs_table::table.filter(
        dsl::id
            .eq(job)
            .and(dsl::state.eq(JobState::Running.as_str()))
            .and(dsl::lease_id.eq(lease)),
    )
}

/// The filter of [`leased`].
type LeasedFilter = diesel::dsl::Filter<
    jobs_table::table,
    diesel::dsl::And<
        diesel::dsl::And<diesel::dsl::Eq<dsl::id, Uuid>, diesel::dsl::Eq<dsl::state, &'static str>>,
        diesel::dsl::Eq<dsl::lease_id, Uuid>,
    >,
>;

/// Claims up to `request.limit` due jobs on their own (`keel_claim_jobs`), most urgent first.
async fn claim_jobs(pool: &PgPool, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
    let mut conn = pool.get().await?;
    // `keel_claim_jobs` (migration 000004) is plpgsql, which keeps the claim's plan: planning
    // the UPDATE with its locking subquery on every call cost ~40% of a no-op job's time.
    let rows: Vec<JobRow> = diesel::sql_query(format!(
        "SELECT {JOB_COLUMNS} FROM keel_claim_jobs($1, $2, $3, $4, $5)"
    ))
    .bind::<Text, _>(&request.worker)
    .bind::<Timestamptz, _>(request.lease_until())
    .bind::<Timestamptz, _>(request.now)
    .bind::<Array<Text>, _>(&request.kinds)
    .bind::<BigInt, _>(i64::from(request.limit))
    .load(&mut conn)
    .await
    .map_err(query_error)?;
    let mut claimed = into_claimed(rows)?;
    // RETURNING does not keep the subquery's order.
    claimed.sort_by(|a, b| {
        (b.job.priority, a.job.run_at, a.job.id).cmp(&(a.job.priority, b.job.run_at, b.job.id))
    });
    Ok(claimed)
}

/// Records one worker's turn on its own: completes its job if the lease still holds it and, when
/// asked, claims the next job in the same round trip (`keel_complete_and_claim`).
async fn complete_one(
    pool: &PgPool,
    completion: &Completion,
) -> Result<Option<ClaimedJob>, StoreError> {
    let (done, next) = match (&completion.done, &completion.next) {
        (None, None) => return Ok(None),
        (None, Some(next)) => {
            let one = ClaimRequest {
                limit: 1,
                ..next.clone()
            };
            return Ok(claim_jobs(pool, &one).await?.into_iter().next());
        }
        (Some(done), next) => (done, next),
    };
    let Some(next) = next else {
        let completed = (
            dsl::state.eq(JobState::Completed.as_str()),
            dsl::finished_at.eq(Some(done.at)),
            unlock(),
        );
        return update_leased(pool, done.job, done.lease, completed)
            .await
            .map(|()| None);
    };
    let mut conn = pool.get().await?;
    let rows: Result<Vec<JobRow>, _> = diesel::sql_query(format!(
        "SELECT {JOB_COLUMNS} FROM keel_complete_and_claim($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind::<SqlUuid, _>(done.job)
    .bind::<SqlUuid, _>(done.lease)
    .bind::<Timestamptz, _>(done.at)
    .bind::<Text, _>(&next.worker)
    .bind::<Timestamptz, _>(next.lease_until())
    .bind::<Timestamptz, _>(next.now)
    .bind::<Array<Text>, _>(&next.kinds)
    .bind::<BigInt, _>(1_i64) // one next job, as the port promises
    .load(&mut conn)
    .await;
    match rows {
        Ok(rows) => Ok(into_claimed(rows)?.into_iter().next()),
        Err(e) if is_lease_lost(&e) => lease_held(0, done.job).map(|()| None),
        Err(e) => Err(query_error(e)),
    }
}

/// Applies `changes` to `job` if `lease` still holds it; [`StoreError::Conflict`] otherwise.
async fn update_leased<V>(
    pool: &PgPool,
    job: Uuid,
    lease: Uuid,
    changes: V,
) -> Result<(), StoreError>
where
    V: diesel::AsChangeset<Target = jobs_table::table> + Send,
    V::Changeset: diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send,
{
    let mut conn = pool.get().await?;
    let updated = diesel::update(leased(job, lease))
        .set(changes)
        .execute(&mut conn)
        .await
        .map_err(query_error)?;
    lease_held(updated, job)
}

impl PgJobQueue {
    /// Applies `changes` to the job of `claimed` if its lease is still held.
    async fn update_leased<V>(&self, claimed: &ClaimedJob, changes: V) -> Result<(), StoreError>
    where
        V: diesel::AsChangeset<Target = jobs_table::table> + Send,
        V::Changeset: diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send,
    {
        update_leased(&self.pool, claimed.job.id.0, claimed.lease, changes).await
    }

    /// Locks one job for an admin change.
    async fn locked(conn: &mut AsyncPgConnection, id: JobId) -> QueryResult<Option<JobRow>> {
        jobs_table::table
            .find(id.0)
            .select(JobRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()
    }
}

/// What an admin change decided inside its transaction.
enum Admin {
    Done(Box<JobRow>),
    NotFound,
    NotAllowed(String),
}

impl Admin {
    fn into_change(self) -> Result<JobChange, StoreError> {
        Ok(match self {
            Self::Done(row) => JobChange::Changed(Box::new(row.into_job()?)),
            Self::NotFound => JobChange::NotFound,
            Self::NotAllowed(state) => JobChange::NotAllowed(
                JobState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("job state {state:?}")))?,
            ),
        })
    }
}

#[async_trait]
impl JobQueue for PgJobQueue {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<EnqueueOutcome, StoreError> {
        let mut conn = self.pool.get().await?;
        let outcome = enqueue_in(&mut conn, &job, now)
            .await
            .map_err(query_error)?;
        if let EnqueueOutcome::Enqueued(_) = outcome {
            self.wakeups.bump();
        }
        Ok(outcome)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        if request.kinds.is_empty() || request.limit == 0 {
            return Ok(Vec::new());
        }
        if request.limit > 1 {
            return claim_jobs(&self.pool, request).await;
        }
        // A worker's claim of one job joins the group commit, with its peers' claims and
        // completions.
        let claimed = self
            .completions
            .call(Completion {
                done: None,
                next: Some(request.clone()),
            })
            .await?;
        Ok(claimed.into_iter().collect())
    }

    async fn complete_and_claim(
        &self,
        claimed: &ClaimedJob,
        now: DateTime<Utc>,
        next: &ClaimRequest,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let next = (!next.kinds.is_empty() && next.limit > 0).then(|| next.clone());
        self.completions
            .call(Completion {
                done: Some(Finished::of(claimed, now)),
                next,
            })
            .await
    }

    async fn heartbeat(
        &self,
        claimed: &ClaimedJob,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update_leased(claimed, dsl::locked_until.eq(Some(until)))
            .await
    }

    async fn complete(&self, claimed: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.completions
            .call(Completion {
                done: Some(Finished::of(claimed, now)),
                next: None,
            })
            .await
            .map(|_| ())
    }

    async fn fail(
        &self,
        claimed: &ClaimedJob,
        error: AttemptError,
        next: AfterFailure,
    ) -> Result<(), StoreError> {
        let entry =
            serde_json::to_value([&error]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let errors = dsl::errors.eq(dsl::errors.concat(entry));
        match next {
            AfterFailure::RetryAt(at) => {
                self.update_leased(
                    claimed,
                    (
                        dsl::state.eq(JobState::Available.as_str()),
                        dsl::run_at.eq(at),
                        errors,
                        unlock(),
                    ),
                )
                .await?;
                self.wakeups.bump();
                Ok(())
            }
            AfterFailure::Dead(at) => {
                self.update_leased(
                    claimed,
                    (
                        dsl::state.eq(JobState::Dead.as_str()),
                        dsl::finished_at.eq(Some(at)),
                        errors,
                        unlock(),
                    ),
                )
                .await
            }
        }
    }

    async fn exhaust(&self, claimed: &ClaimedJob) -> Result<(), StoreError> {
        self.update_leased(claimed, dsl::attempt.eq(dsl::max_attempts))
            .await
    }

    async fn release(&self, claimed: &ClaimedJob) -> Result<(), StoreError> {
        self.update_leased(
            claimed,
            (
                dsl::state.eq(JobState::Available.as_str()),
                dsl::attempt.eq(dsl::attempt - 1),
                unlock(),
            ),
        )
        .await?;
        self.wakeups.bump();
        Ok(())
    }

    async fn rescue_expired(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        if request.kinds.is_empty() || request.limit == 0 {
            return Ok(Vec::new());
        }
        let at =
            serde_json::to_value(request.now).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.pool.get().await?;
        let (retried, rows) = conn
            .transaction(async |conn| {
                #[derive(QueryableByName)]
                struct Expired {
                    #[diesel(sql_type = SqlUuid)]
                    id: Uuid,
                    #[diesel(sql_type = diesel::sql_types::Bool)]
                    retryable: bool,
                }
                let expired: Vec<Expired> = diesel::sql_query(
                    "SELECT id, attempt < max_attempts AS retryable FROM jobs \
                     WHERE state = 'running' AND locked_until < $1 AND kind = ANY($2) \
                     ORDER BY locked_until, id LIMIT $3 FOR UPDATE SKIP LOCKED",
                )
                .bind::<Timestamptz, _>(request.now)
                .bind::<Array<Text>, _>(&request.kinds)
                .bind::<BigInt, _>(i64::from(request.limit))
                .load(conn)
                .await?;
                let (retry, exhausted): (Vec<_>, Vec<_>) =
                    expired.into_iter().partition(|e| e.retryable);
                let retry: Vec<Uuid> = retry.into_iter().map(|e| e.id).collect();
                let exhausted: Vec<Uuid> = exhausted.into_iter().map(|e| e.id).collect();
                let mut retried = 0;
                if !retry.is_empty() {
                    retried = diesel::sql_query(
                        "UPDATE jobs SET state = 'available', run_at = $1, \
                         errors = errors || jsonb_build_array(jsonb_build_object(\
                             'attempt', attempt, 'at', $2, 'error', $3::text)), \
                         locked_by = NULL, locked_until = NULL, lease_id = NULL \
                         WHERE id = ANY($4)",
                    )
                    .bind::<Timestamptz, _>(request.now)
                    .bind::<Jsonb, _>(&at)
                    .bind::<Text, _>(LEASE_EXPIRED)
                    .bind::<Array<SqlUuid>, _>(&retry)
                    .execute(conn)
                    .await?;
                }
                let mut rows = Vec::new();
                if !exhausted.is_empty() {
                    rows = diesel::sql_query(format!(
                        "UPDATE jobs SET locked_by = $1, locked_until = $2, \
                         lease_id = gen_random_uuid() WHERE id = ANY($3) RETURNING {JOB_COLUMNS}"
                    ))
                    .bind::<Text, _>(&request.worker)
                    .bind::<Timestamptz, _>(request.lease_until())
                    .bind::<Array<SqlUuid>, _>(&exhausted)
                    .load::<JobRow>(conn)
                    .await?;
                }
                Ok::<_, diesel::result::Error>((retried, rows))
            })
            .await
            .map_err(query_error)?;
        if retried > 0 {
            self.wakeups.bump();
        }
        into_claimed(rows)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<JobRow> = jobs_table::table
            .find(id.0)
            .select(JobRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        row.map(JobRow::into_job).transpose()
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut query = jobs_table::table
            .select(JobRow::as_select())
            .order((dsl::created_at.desc(), dsl::id.desc()))
            .limit(i64::from(filter.limit))
            .into_boxed();
        if let Some(state) = filter.state {
            query = query.filter(dsl::state.eq(state.as_str()));
        }
        if let Some(kind) = &filter.kind {
            query = query.filter(dsl::kind.eq(kind.clone()));
        }
        if let Some((created_at, id)) = filter.before {
            query = query.filter(
                dsl::created_at
                    .lt(created_at)
                    .or(dsl::created_at.eq(created_at).and(dsl::id.lt(id.0))),
            );
        }
        let rows = query.load(&mut conn).await.map_err(query_error)?;
        into_jobs(rows)
    }

    async fn retry(&self, id: JobId, now: DateTime<Utc>) -> Result<JobChange, StoreError> {
        let mut conn = self.pool.get().await?;
        let admin = conn
            .transaction(async |conn| {
                let Some(row) = Self::locked(conn, id).await? else {
                    return Ok(Admin::NotFound);
                };
                let this = jobs_table::table.find(id.0);
                let updated = match JobState::parse(&row.state) {
                    Some(JobState::Dead) => {
                        diesel::update(this)
                            .set((
                                dsl::state.eq(JobState::Available.as_str()),
                                dsl::attempt.eq(0),
                                dsl::run_at.eq(now),
                                dsl::finished_at.eq(None::<DateTime<Utc>>),
                            ))
                            .returning(JobRow::as_returning())
                            .get_result(conn)
                            .await?
                    }
                    Some(JobState::Available) => {
                        diesel::update(this)
                            .set(dsl::run_at.eq(now))
                            .returning(JobRow::as_returning())
                            .get_result(conn)
                            .await?
                    }
                    _ => return Ok(Admin::NotAllowed(row.state)),
                };
                Ok::<_, diesel::result::Error>(Admin::Done(Box::new(updated)))
            })
            .await
            .map_err(query_error)?;
        if let Admin::Done(_) = admin {
            self.wakeups.bump();
        }
        admin.into_change()
    }

    async fn delete(&self, id: JobId) -> Result<JobChange, StoreError> {
        let mut conn = self.pool.get().await?;
        let admin = conn
            .transaction(async |conn| {
                let Some(row) = Self::locked(conn, id).await? else {
                    return Ok(Admin::NotFound);
                };
                if row.state == JobState::Running.as_str() {
                    return Ok(Admin::NotAllowed(row.state));
                }
                diesel::delete(jobs_table::table.find(id.0))
                    .execute(conn)
                    .await?;
                Ok::<_, diesel::result::Error>(Admin::Done(Box::new(row)))
            })
            .await
            .map_err(query_error)?;
        admin.into_change()
    }

    async fn counts(&self) -> Result<Vec<JobCount>, StoreError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<(String, String, i64)> = jobs_table::table
            .group_by((dsl::kind, dsl::state))
            .select((dsl::kind, dsl::state, count_star()))
            .order((dsl::kind, dsl::state))
            .load(&mut conn)
            .await
            .map_err(query_error)?;
        rows.into_iter()
            .map(|(kind, state, count)| {
                let state = JobState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("job state {state:?}")))?;
                Ok(JobCount {
                    kind,
                    state,
                    count: u64::try_from(count).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn purge_completed(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut purged = 0u64;
        loop {
            // ctid batches keep each DELETE short; the partial index on finished_at finds them.
            let deleted = diesel::sql_query(
                "DELETE FROM jobs WHERE ctid IN (SELECT ctid FROM jobs \
                 WHERE state = 'completed' AND finished_at < $1 LIMIT $2)",
            )
            .bind::<Timestamptz, _>(before)
            .bind::<BigInt, _>(PURGE_BATCH)
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
            purged += deleted as u64;
            if (deleted as i64) < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }

    fn work_generation(&self) -> u64 {
        self.wakeups.generation()
    }

    async fn work_changed(&self, seen: u64) {
        self.wakeups.changed(seen).await;
    }
}
