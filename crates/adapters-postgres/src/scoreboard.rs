//! The scoreboard in Postgres: standings in `scores`, single-use actions with their history in
//! `score_actions` (see `migrations/…_scoreboard`).
//!
//! Scoring is one transaction: the user's `scores` row is created if missing, then updated with
//! `score = score + delta … WHERE score <= MAX - delta` (its row lock serialises one user's
//! concurrent actions, so they sum exactly; no row back means the guard refused), the rank is
//! counted in the board order, and the history row is inserted with the action id as primary
//! key (a concurrent repeat of the same action rolls the whole transaction back and reads the
//! winner's row instead).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::scoreboard::{
    ApplyScore, MAX_SCORE, RankedStanding, ScoreReceipt, ScoreStore, ScoredAction, Standing,
};
use uuid::Uuid;

use crate::PgPool;
use crate::error::query_error;

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

/// [`ScoreStore`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgScoreStore {
    pool: PgPool,
}

impl PgScoreStore {
    /// The store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The earlier use of an action, if any: who, with which token, and its first response.
type UsedRow = (Option<Uuid>, Vec<u8>, i64, i64, i64, i64);

fn receipt(
    (_, _, old_score, new_score, rank, delta): &UsedRow,
) -> Result<ScoreReceipt, StoreError> {
    Ok(ScoreReceipt {
        old_score: *old_score,
        new_score: *new_score,
        rank: u64::try_from(*rank).map_err(|_| StoreError::Corrupt("negative rank".into()))?,
        delta: *delta,
    })
}

async fn used(conn: &mut AsyncPgConnection, action: Uuid) -> QueryResult<Option<UsedRow>> {
    score_actions::table
        .filter(score_actions::action_id.eq(action))
        .select((
            score_actions::user_id,
            score_actions::token_hash,
            score_actions::old_score,
            score_actions::new_score,
            score_actions::rank,
            score_actions::delta,
        ))
        .first(conn)
        .await
        .optional()
}

/// What an earlier use of the action means for this one.
fn repeat(row: &UsedRow, action: &ScoredAction) -> Result<ApplyScore, StoreError> {
    let same = row.0 == Some(action.user_id.0) && row.1 == action.token_hash;
    Ok(if same {
        ApplyScore::Replayed(receipt(row)?)
    } else {
        ApplyScore::UsedOtherwise
    })
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

/// Why a scoring transaction stopped without committing.
enum Stop {
    Db(diesel::result::Error),
    Overflow,
}

impl From<diesel::result::Error> for Stop {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

async fn apply_on(
    conn: &mut AsyncPgConnection,
    action: &ScoredAction,
) -> Result<(ScoreReceipt, DateTime<Utc>), Stop> {
    let user = action.user_id.0;
    // The row first (a concurrent first action of the same user waits on its key), then the
    // guarded increment, which holds the row lock to the commit.
    diesel::insert_into(scores::table)
        .values((
            scores::user_id.eq(user),
            scores::score.eq(0),
            scores::reached_at.eq(action.at),
            scores::updated_at.eq(action.at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    // GREATEST: of two concurrent actions, the later-stamped one may take the lock first; the
    // time a score was reached never moves backwards.
    let reached = diesel::dsl::sql::<diesel::sql_types::Timestamptz>("GREATEST(reached_at, ")
        .bind::<diesel::sql_types::Timestamptz, _>(action.at)
        .sql(")");
    let updated: Option<(i64, DateTime<Utc>)> = diesel::update(
        scores::table
            .filter(scores::user_id.eq(user))
            .filter(scores::score.le(MAX_SCORE - action.delta)),
    )
    .set((
        scores::score.eq(scores::score + action.delta),
        scores::reached_at.eq(reached),
        scores::updated_at.eq(action.at),
    ))
    .returning((scores::score, scores::reached_at))
    .get_result(conn)
    .await
    .optional()?;
    let Some((new_score, reached_at)) = updated else {
        return Err(Stop::Overflow);
    };
    let rank = rank_of(conn, new_score, reached_at, user).await?;
    let old_score = new_score - action.delta;
    diesel::insert_into(score_actions::table)
        .values((
            score_actions::action_id.eq(action.action_id),
            score_actions::user_id.eq(Some(user)),
            score_actions::action_type.eq(&action.action_type),
            score_actions::delta.eq(action.delta),
            score_actions::old_score.eq(old_score),
            score_actions::new_score.eq(new_score),
            score_actions::rank.eq(rank),
            score_actions::token_hash.eq(action.token_hash.as_slice()),
            score_actions::created_at.eq(action.at),
        ))
        .execute(conn)
        .await?;
    let receipt = ScoreReceipt {
        old_score,
        new_score,
        rank: u64::try_from(rank).unwrap_or(u64::MAX),
        delta: action.delta,
    };
    Ok((receipt, reached_at))
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
        let mut conn = self.pool.get().await?;
        if let Some(row) = used(&mut conn, action.action_id)
            .await
            .map_err(query_error)?
        {
            return repeat(&row, action);
        }
        let result = conn
            .transaction(async |conn| apply_on(conn, action).await)
            .await;
        match result {
            Ok((receipt, reached_at)) => Ok(ApplyScore::Applied {
                receipt,
                reached_at,
            }),
            Err(Stop::Overflow) => Ok(ApplyScore::Overflow),
            // A concurrent use of the same action won the primary key: answer as a repeat.
            Err(Stop::Db(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ))) => match used(&mut conn, action.action_id)
                .await
                .map_err(query_error)?
            {
                Some(row) => repeat(&row, action),
                None => Err(StoreError::Conflict("the action id is taken".into())),
            },
            Err(Stop::Db(e)) => Err(query_error(e)),
        }
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
