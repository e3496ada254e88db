//! Group commit of job completions: the completions and next claims of a node's concurrent
//! workers, run as one call of `keel_complete_many_and_claim` (migration 000013), so a busy node
//! pays one round trip and one commit per group of finished jobs instead of one per job. Idle
//! workers' claims of one job join the groups too: the wake-up that reaches every idle worker
//! costs one claim statement, not one per worker.
//!
//! Each completion is still conditional on its own lease: the group's statement changes nothing
//! if any lease was lost, and the group is then recorded one job at a time, so only the caller
//! whose lease was lost hears [`StoreError::Conflict`] and no job is claimed for it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use keel_domain::StoreError;
use keel_domain::jobs::{ClaimRequest, ClaimedJob};
use uuid::Uuid;

use super::complete_one;
use super::rows::{JOB_COLUMNS, JobRow};
use crate::PgPool;
use crate::error::query_error;
use crate::group::GroupWork;

/// Most completions in one group.
pub const MAX_GROUP: usize = 64;

/// A job a worker finished.
#[derive(Debug, Clone)]
pub(super) struct Finished {
    /// The job.
    pub job: Uuid,
    /// The lease it was run under.
    pub lease: Uuid,
    /// When it finished.
    pub at: DateTime<Utc>,
}

impl Finished {
    /// `claimed`, finished at `at`.
    pub fn of(claimed: &ClaimedJob, at: DateTime<Utc>) -> Self {
        Self {
            job: claimed.job.id.0,
            lease: claimed.lease,
            at,
        }
    }
}

/// One worker's turn: the job it finished, if any, and the next job it asks for, if any.
#[derive(Debug, Clone)]
pub(super) struct Completion {
    /// The finished job.
    pub done: Option<Finished>,
    /// The next claim (`limit` is taken as 1).
    pub next: Option<ClaimRequest>,
}

/// Completions of one queue, in groups.
pub(super) struct Completions {
    pub pool: PgPool,
}

impl Completions {
    /// The kinds the group's claims ask for (every worker of a node asks for the same).
    fn kinds(group: &[Completion]) -> Option<&[String]> {
        group
            .iter()
            .find_map(|c| c.next.as_ref().map(|n| n.kinds.as_slice()))
    }
}

#[async_trait]
impl GroupWork for Completions {
    type Item = Completion;
    type Output = Option<ClaimedJob>;
    const MAX_GROUP: usize = MAX_GROUP;
    // One: the workers finishing while a group commits form the next group.
    const MAX_IN_FLIGHT: usize = 1;
    const NAME: &'static str = "the job completions";

    /// Claims of one group share their kinds.
    fn fits(group: &[Completion], item: &Completion) -> bool {
        match (Self::kinds(group), &item.next) {
            (Some(kinds), Some(next)) => kinds == next.kinds.as_slice(),
            _ => true,
        }
    }

    async fn run(&self, group: &[Completion]) -> Vec<Result<Option<ClaimedJob>, StoreError>> {
        match complete_group(&self.pool, group).await {
            Ok(outcomes) => outcomes,
            Err(e) => group.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

/// Runs one group: completes its jobs and claims one next job per claim asked, in one
/// statement; if a lease was lost, one job at a time instead.
async fn complete_group(
    pool: &PgPool,
    group: &[Completion],
) -> Result<Vec<Result<Option<ClaimedJob>, StoreError>>, StoreError> {
    if let [single] = group {
        return Ok(vec![complete_one(pool, single).await]);
    }
    let done: Vec<&Finished> = group.iter().filter_map(|c| c.done.as_ref()).collect();
    let ids: Vec<Uuid> = done.iter().map(|d| d.job).collect();
    let leases: Vec<Uuid> = done.iter().map(|d| d.lease).collect();
    let finished: Vec<DateTime<Utc>> = done.iter().map(|d| d.at).collect();
    let claims: Vec<&ClaimRequest> = group.iter().filter_map(|c| c.next.as_ref()).collect();
    let workers: Vec<&str> = claims.iter().map(|n| n.worker.as_str()).collect();
    let until: Vec<DateTime<Utc>> = claims.iter().map(|n| n.lease_until()).collect();
    let now = claims.iter().map(|n| n.now).max().unwrap_or_default();
    let kinds = Completions::kinds(group).unwrap_or_default();

    let mut conn = pool.get().await?;
    let rows: Result<Vec<JobRow>, _> = diesel::sql_query(format!(
        "SELECT {JOB_COLUMNS} FROM keel_complete_many_and_claim($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<SqlUuid>, _>(&leases)
    .bind::<Array<Timestamptz>, _>(&finished)
    .bind::<Array<Text>, _>(&workers)
    .bind::<Array<Timestamptz>, _>(&until)
    .bind::<Timestamptz, _>(now)
    .bind::<Array<Text>, _>(kinds)
    .load(&mut conn)
    .await;
    drop(conn);
    let mut claimed = match rows {
        Ok(rows) => rows,
        Err(e) if is_lease_lost(&e) => {
            let mut outcomes = Vec::with_capacity(group.len());
            for completion in group {
                outcomes.push(complete_one(pool, completion).await);
            }
            return Ok(outcomes);
        }
        Err(e) => return Err(query_error(e)),
    };
    // Lowest priority and newest first, so taking from the end hands out the most urgent job.
    claimed.sort_by(|a, b| (a.priority, b.run_at, b.id).cmp(&(b.priority, a.run_at, a.id)));
    Ok(group
        .iter()
        .map(|completion| match &completion.next {
            Some(request) => claimed
                .iter()
                .rposition(|row| row.locked_by.as_deref() == Some(request.worker.as_str()))
                .map(|at| claimed.remove(at).into_claimed())
                .transpose(),
            None => Ok(None),
        })
        .collect())
}

/// Whether a statement failed because a job's lease was lost (`keel: lease lost`).
pub(super) fn is_lease_lost(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info)
        if info.message().contains("keel: lease lost"))
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use std::time::Duration;

    use diesel::sql_types::Uuid as SqlUuid;
    use keel_domain::jobs::{JobQueue, JobState, NewJob};

    use super::*;
    use crate::PgJobQueue;
    use crate::testkit::TestDatabase;

    const KIND: &str = "test.grouped";

    fn request(worker: &str) -> ClaimRequest {
        ClaimRequest {
            kinds: vec![KIND.to_owned()],
            worker: worker.to_owned(),
            now: Utc::now(),
            lease: Duration::from_secs(30),
            limit: 1,
        }
    }

    /// A queue holding `jobs` due jobs, `claimed` of them claimed by workers `w0`, `w1`, ….
    async fn queue_with(db: &TestDatabase, jobs: usize, claimed: usize) -> Vec<ClaimedJob> {
        let queue = PgJobQueue::new(db.pool().clone());
        let start = Utc::now() - chrono::Duration::seconds(60);
        for n in 0..jobs {
            let job = NewJob {
                kind: KIND.to_owned(),
                payload: serde_json::json!(n),
                priority: 0,
                max_attempts: 3,
                run_at: start + chrono::Duration::seconds(n as i64),
                unique_key: None,
            };
            queue.enqueue(job, Utc::now()).await.expect("enqueue");
        }
        let mut held = Vec::new();
        for w in 0..claimed {
            held.extend(
                queue
                    .claim(&request(&format!("w{w}")))
                    .await
                    .expect("claim"),
            );
        }
        held
    }

    fn completion(held: &ClaimedJob, next: Option<&str>) -> Completion {
        Completion {
            done: Some(Finished::of(held, Utc::now())),
            next: next.map(request),
        }
    }

    async fn state_of(db: &TestDatabase, job: Uuid) -> (String, Option<String>) {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            state: String,
            #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
            locked_by: Option<String>,
        }
        let mut conn = db.pool().get().await.expect("connection");
        let row: Row = diesel::sql_query("SELECT state, locked_by FROM jobs WHERE id = $1")
            .bind::<SqlUuid, _>(job)
            .get_result(&mut conn)
            .await
            .expect("the job's row");
        (row.state, row.locked_by)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_group_completes_every_job_and_hands_each_worker_a_distinct_next_job() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let held = queue_with(&db, 5, 3).await;
        let group = [
            completion(&held[0], Some("w0")),
            completion(&held[1], Some("w1")),
            completion(&held[2], Some("w2")),
        ];
        let outcomes = complete_group(db.pool(), &group).await.unwrap();
        for job in &held {
            assert_eq!(state_of(&db, job.job.id.0).await.0, "completed");
        }
        let next: Vec<Option<ClaimedJob>> = outcomes.into_iter().map(Result::unwrap).collect();
        // Two jobs were left: the two oldest claims get one each, in due order.
        let handed: Vec<&ClaimedJob> = next.iter().flatten().collect();
        assert_eq!(handed.len(), 2);
        assert_ne!(handed[0].job.id, handed[1].job.id);
        for (worker, next) in ["w0", "w1", "w2"].iter().zip(&next) {
            if let Some(next) = next {
                assert_eq!(next.job.state, JobState::Running);
                let stored = state_of(&db, next.job.id.0).await;
                assert_eq!(stored, ("running".to_owned(), Some((*worker).to_owned())));
            }
        }
        assert_eq!(
            next[0].as_ref().map(|j| j.job.payload.clone()),
            Some(serde_json::json!(3))
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lost_lease_refuses_only_its_own_completion_and_claims_nothing_for_it() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let held = queue_with(&db, 6, 3).await;
        // Another holder took the second job over.
        let mut conn = db.pool().get().await.unwrap();
        diesel::sql_query(
            "UPDATE jobs SET lease_id = gen_random_uuid(), locked_by = 'other' WHERE id = $1",
        )
        .bind::<SqlUuid, _>(held[1].job.id.0)
        .execute(&mut conn)
        .await
        .unwrap();
        drop(conn);
        let group = [
            completion(&held[0], Some("w0")),
            completion(&held[1], Some("w1")),
            completion(&held[2], None),
            // An idle worker's claim, in the same group.
            Completion {
                done: None,
                next: Some(request("w3")),
            },
        ];
        let outcomes = complete_group(db.pool(), &group).await.unwrap();
        assert!(matches!(outcomes[0], Ok(Some(_))), "{:?}", outcomes[0]);
        assert!(matches!(outcomes[3], Ok(Some(_))), "{:?}", outcomes[3]);
        assert!(
            matches!(outcomes[1], Err(StoreError::Conflict(_))),
            "{:?}",
            outcomes[1]
        );
        assert!(matches!(outcomes[2], Ok(None)), "{:?}", outcomes[2]);
        assert_eq!(state_of(&db, held[0].job.id.0).await.0, "completed");
        assert_eq!(
            state_of(&db, held[1].job.id.0).await,
            ("running".to_owned(), Some("other".to_owned()))
        );
        assert_eq!(state_of(&db, held[2].job.id.0).await.0, "completed");
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = db.pool().get().await.unwrap();
        let w1: Count = diesel::sql_query("SELECT count(*) AS n FROM jobs WHERE locked_by = 'w1'")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            w1.n, 0,
            "no job may be claimed for a worker whose lease was lost"
        );
    }
}
