//! The scoreboard in Postgres: standings in `scores`, single-use actions with their history in
//! `score_actions` (see `migrations/…_scoreboard`).
//!
//! Scoring is ONE statement per batch of actions ([`apply`]): the account check, the single-use
//! lookup, the guarded upsert of the user's `scores` row (its row lock serialises one user's
//! concurrent actions, so they sum exactly; no row back means the guard refused), the rank in
//! the board order and the history row, with the action id as primary key. Concurrent calls on
//! one node are grouped into such batches ([`batch`]: group commit).

mod apply;
mod batch;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::scoreboard::{ApplyScore, RankedStanding, ScoreStore, ScoredAction, Standing};
use uuid::Uuid;

/// Counters of the score batches run.
pub use crate::group::GroupStats as ScoreBatchStats;
pub use batch::{MAX_BATCH, MAX_IN_FLIGHT};

use crate::PgPool;
use crate::error::query_error;
use batch::{Batcher, ScoreBatches};

diesel::table! {
    /// One standing per user.
    scores (user_id) {
        /// The user.
        user_id -> Uuid,
        /// Their score.
        score -> BigInt,
        /// When they reached it (whole seconds).
        reached_at -> Timestamptz,
        /// Last change.
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// One row per used action: single use and history.
    score_actions (action_id) {
        /// The action.
        action_id -> Uuid,
        /// Who scored (NULL once anonymised).
        user_id -> Nullable<Uuid>,
        /// Its type.
        action_type -> Text,
        /// Score added.
        delta -> BigInt,
        /// Score before.
        old_score -> BigInt,
        /// Score after.
        new_score -> BigInt,
        /// Rank right after.
        rank -> BigInt,
        /// SHA-256 of the token used.
        token_hash -> Bytea,
        /// When.
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Display names (the identity migration's table).
    users (id) {
        /// The user.
        id -> Uuid,
        /// Shown on boards.
        display_name -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(scores, users);

/// [`ScoreStore`] on Postgres, where only the accounts of the `users` table score. Clones share
/// one group commit.
#[derive(Debug, Clone)]
pub struct PgScoreStore {
    pool: PgPool,
    batcher: Arc<Batcher>,
}

impl PgScoreStore {
    /// The store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            batcher: Arc::new(ScoreBatches::grouper(pool.clone())),
            pool,
        }
    }

    /// Applies `actions` together, as the group commit does with concurrent calls: in rounds
    /// where each user and action id appears once (a user's later action sees the earlier),
    /// each round one statement; a round the database refuses as a whole is retried one action
    /// at a time, so one action's failure never fails the others. Outcomes in input order.
    pub async fn apply_all(&self, actions: &[ScoredAction]) -> Vec<Result<ApplyScore, StoreError>> {
        let refs: Vec<&ScoredAction> = actions.iter().collect();
        apply::apply_all(&self.pool, &refs).await
    }

    /// The group commit's counters so far.
    pub fn batch_stats(&self) -> ScoreBatchStats {
        self.batcher.stats()
    }
}

/// Rows strictly before `(score, reached_at, user)` in the board order, plus one.
async fn rank_of(
    conn: &mut AsyncPgConnection,
    score: i64,
    reached_at: DateTime<Utc>,
    user: Uuid,
) -> QueryResult<i64> {
    let better: i64 = scores::table
        .filter(
            scores::score
                .gt(score)
                .or(scores::score
                    .eq(score)
                    .and(scores::reached_at.lt(reached_at)))
                .or(scores::score
                    .eq(score)
                    .and(scores::reached_at.eq(reached_at))
                    .and(scores::user_id.lt(user))),
        )
        .count()
        .get_result(conn)
        .await?;
    Ok(better + 1)
}

fn standing((user, score, reached_at): (Uuid, i64, DateTime<Utc>)) -> Standing {
    Standing {
        user_id: UserId(user),
        score,
        reached_at,
    }
}

#[async_trait]
impl ScoreStore for PgScoreStore {
    async fn apply(&self, action: &ScoredAction) -> Result<ApplyScore, StoreError> {
        self.batcher.call(action.clone()).await
    }

    async fn top(&self, limit: u32) -> Result<Vec<RankedStanding>, StoreError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<(Uuid, i64, DateTime<Utc>, Option<String>)> = scores::table
            .left_join(users::table.on(users::id.eq(scores::user_id)))
            .select((
                scores::user_id,
                scores::score,
                scores::reached_at,
                users::display_name.nullable(),
            ))
            .order((
                scores::score.desc(),
                scores::reached_at.asc(),
                scores::user_id.asc(),
            ))
            .limit(i64::from(limit))
            .load(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(rows
            .into_iter()
            .enumerate()
            .map(
                |(i, (user, score, reached_at, display_name))| RankedStanding {
                    rank: i as u64 + 1,
                    standing: standing((user, score, reached_at)),
                    display_name,
                },
            )
            .collect())
    }

    async fn rank(&self, user: UserId) -> Result<Option<RankedStanding>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<(Uuid, i64, DateTime<Utc>, Option<String>)> = scores::table
            .left_join(users::table.on(users::id.eq(scores::user_id)))
            .filter(scores::user_id.eq(user.0))
            .select((
                scores::user_id,
                scores::score,
                scores::reached_at,
                users::display_name.nullable(),
            ))
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        let Some((id, score, reached_at, display_name)) = row else {
            return Ok(None);
        };
        let rank = rank_of(&mut conn, score, reached_at, id)
            .await
            .map_err(query_error)?;
        Ok(Some(RankedStanding {
            rank: u64::try_from(rank).unwrap_or(u64::MAX),
            standing: standing((id, score, reached_at)),
            display_name,
        }))
    }

    async fn standings(
        &self,
        after: Option<Standing>,
        limit: u32,
    ) -> Result<Vec<Standing>, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut query = scores::table
            .select((scores::user_id, scores::score, scores::reached_at))
            .order((
                scores::score.desc(),
                scores::reached_at.asc(),
                scores::user_id.asc(),
            ))
            .limit(i64::from(limit))
            .into_boxed();
        if let Some(a) = after {
            query = query.filter(
                scores::score
                    .lt(a.score)
                    .or(scores::score
                        .eq(a.score)
                        .and(scores::reached_at.gt(a.reached_at)))
                    .or(scores::score
                        .eq(a.score)
                        .and(scores::reached_at.eq(a.reached_at))
                        .and(scores::user_id.gt(a.user_id.0))),
            );
        }
        let rows: Vec<(Uuid, i64, DateTime<Utc>)> =
            query.load(&mut conn).await.map_err(query_error)?;
        Ok(rows.into_iter().map(standing).collect())
    }

    async fn remove_user(&self, user: UserId) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| {
            let removed = diesel::delete(scores::table.filter(scores::user_id.eq(user.0)))
                .execute(conn)
                .await?;
            diesel::update(score_actions::table.filter(score_actions::user_id.eq(user.0)))
                .set(score_actions::user_id.eq(None::<Uuid>))
                .execute(conn)
                .await?;
            Ok::<_, diesel::result::Error>(removed > 0)
        })
        .await
        .map_err(query_error)
    }

    async fn display_names(&self, ids: &[UserId]) -> Result<HashMap<UserId, String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut conn = self.pool.get().await?;
        let wanted: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let rows: Vec<(Uuid, String)> = users::table
            .filter(users::id.eq_any(wanted))
            .select((users::id, users::display_name))
            .load(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| (UserId(id), name))
            .collect())
    }
}
