//! Scoring in ONE statement ([`APPLY`]) per round of actions: the account check, the single-use
//! lookup, the guarded increment, the rank and the history row, in one round trip (and, outside
//! any transaction, one commit).
//!
//! A round holds each user and each action id at most once ([`rounds`] splits any list so):
//! `INSERT … ON CONFLICT DO UPDATE` may touch a row once per statement, and a user's actions
//! then follow each other in separate commits, each seeing the one before. The statement locks
//! the `scores` rows in user id order, the order every writer takes, so two rounds never
//! deadlock. A round the database refuses as a whole (an action id used meanwhile by another
//! connection, any other statement error) leaves nothing; [`apply_all`] then runs its actions
//! one at a time, so one action's failure never fails the others.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error, QueryResult};
use diesel::sql_types::{
    Array, BigInt, Binary, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::scoreboard::{ApplyScore, MAX_SCORE, ScoreReceipt, ScoredAction};
use uuid::Uuid;

use crate::PgPool;
use crate::error::query_error;

/// Scores a round of actions given as arrays (each `$?` a bind parameter, in the order of
/// [`ApplyQuery::walk_ast`]: action ids, user ids, types, deltas, token hashes, times, then the
/// maximum score twice).
///
/// - `members`: the actions whose user has an account (a deleted account never scores, checked
///   in the same statement as the write); the others come back as outcome 2.
/// - `prior`: earlier uses of the members' action ids (outcome 1: replayed or used otherwise).
/// - `fresh`: the rest, unless the delta alone passes the maximum; `raised` creates or raises
///   each user's row, in user id order, unless the guard refuses (no row back: overflow). The
///   row lock is held to the commit, so one user's concurrent actions sum exactly; `GREATEST`:
///   the time a score was reached never moves backwards.
/// - `board`, `positions`, `ranked`: each new standing's position in the board order (score
///   desc, reached first, lower user id) among the stored standings of users outside the round
///   and the round's new ones (the rank right after the round's commit). One scan of the
///   standings at least as good as the round's worst and one sort serve the whole round; a
///   `count(*)` per action would scan the board once per action, which cost most of the
///   statement's time in `bench scoreboard` (1000 close scores, ranks in the hundreds).
/// - `history`: one row per scored action, its id the primary key (single use).
///
/// Each array is read through a scalar subquery, `(SELECT $?::…[])`, so every plan of the
/// statement looks alike and Postgres can keep the prepared statement's generic plan.
const APPLY: &str = "\
WITH input AS ( \
    SELECT * FROM unnest((SELECT $?::uuid[]), (SELECT $?::uuid[]), (SELECT $?::text[]), \
        (SELECT $?::int8[]), (SELECT $?::bytea[]), (SELECT $?::timestamptz[])) \
        AS i(action_id, user_id, action_type, delta, token_hash, at) \
), members AS ( \
    SELECT i.* FROM input i WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = i.user_id) \
), prior AS ( \
    SELECT a.action_id, a.user_id, a.token_hash, a.old_score, a.new_score, a.rank, a.delta \
    FROM score_actions a WHERE a.action_id IN (SELECT action_id FROM members) \
), fresh AS ( \
    SELECT m.* FROM members m \
    WHERE m.delta <= $?::int8 \
      AND NOT EXISTS (SELECT 1 FROM prior p WHERE p.action_id = m.action_id) \
), raised AS ( \
    INSERT INTO scores AS s (user_id, score, reached_at, updated_at) \
    SELECT user_id, delta, at, at FROM fresh ORDER BY user_id \
    ON CONFLICT (user_id) DO UPDATE \
        SET score = s.score + EXCLUDED.score, \
            reached_at = GREATEST(s.reached_at, EXCLUDED.reached_at), \
            updated_at = EXCLUDED.updated_at \
        WHERE s.score <= $?::int8 - EXCLUDED.score \
    RETURNING s.user_id, s.score, s.reached_at \
), board AS ( \
    SELECT b.user_id, b.score, b.reached_at, false AS mine FROM scores b \
    WHERE b.score >= (SELECT min(score) FROM raised) \
      AND b.user_id NOT IN (SELECT user_id FROM raised) \
    UNION ALL \
    SELECT user_id, score, reached_at, true FROM raised \
), positions AS ( \
    SELECT user_id, score, reached_at, mine, \
        row_number() OVER (ORDER BY score DESC, reached_at, user_id) AS rank \
    FROM board \
), ranked AS ( \
    SELECT f.action_id, f.user_id, f.action_type, f.delta, f.token_hash, f.at, \
        p.score AS new_score, p.reached_at, p.rank \
    FROM fresh f JOIN positions p ON p.user_id = f.user_id AND p.mine \
), history AS ( \
    INSERT INTO score_actions (action_id, user_id, action_type, delta, old_score, new_score, \
        rank, token_hash, created_at) \
    SELECT action_id, user_id, action_type, delta, new_score - delta, new_score, rank, \
        token_hash, at FROM ranked \
) \
SELECT 0::int2, action_id, user_id, token_hash, new_score - delta, new_score, rank, delta, \
    reached_at FROM ranked \
UNION ALL \
SELECT 1::int2, action_id, user_id, token_hash, old_score, new_score, rank, delta, \
    NULL::timestamptz FROM prior \
UNION ALL \
SELECT 2::int2, i.action_id, i.user_id, i.token_hash, 0::int8, 0::int8, 0::int8, 0::int8, \
    NULL::timestamptz FROM input i \
WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.action_id = i.action_id)";

/// Outcome codes of [`APPLY`]'s rows.
const SCORED: i16 = 0;
const USED: i16 = 1;
const NO_ACCOUNT: i16 = 2;

/// One row of [`APPLY`]: outcome, action, user, token hash, old and new score, rank, delta, and
/// when the new score was reached (scored rows only).
type Row = (
    i16,
    Uuid,
    Option<Uuid>,
    Vec<u8>,
    i64,
    i64,
    i64,
    i64,
    Option<DateTime<Utc>>,
);

/// [`APPLY`] with its arrays bound: one SQL text whatever the round, so the connection keeps it
/// prepared.
struct ApplyQuery {
    action_ids: Vec<Uuid>,
    user_ids: Vec<Uuid>,
    types: Vec<String>,
    deltas: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    at: Vec<DateTime<Utc>>,
}

impl ApplyQuery {
    fn of(round: &[&ScoredAction]) -> Self {
        Self {
            action_ids: round.iter().map(|a| a.action_id).collect(),
            user_ids: round.iter().map(|a| a.user_id.0).collect(),
            types: round.iter().map(|a| a.action_type.clone()).collect(),
            deltas: round.iter().map(|a| a.delta).collect(),
            hashes: round.iter().map(|a| a.token_hash.to_vec()).collect(),
            at: round.iter().map(|a| a.at).collect(),
        }
    }
}

impl QueryId for ApplyQuery {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for ApplyQuery {
    type SqlType = (
        SmallInt,
        SqlUuid,
        Nullable<SqlUuid>,
        Binary,
        BigInt,
        BigInt,
        BigInt,
        BigInt,
        Nullable<Timestamptz>,
    );
}

impl QueryFragment<Pg> for ApplyQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for (i, sql) in APPLY.split("$?").enumerate() {
            out.push_sql(sql);
            match i {
                0 => out.push_bind_param::<Array<SqlUuid>, _>(&self.action_ids)?,
                1 => out.push_bind_param::<Array<SqlUuid>, _>(&self.user_ids)?,
                2 => out.push_bind_param::<Array<Text>, _>(&self.types)?,
                3 => out.push_bind_param::<Array<BigInt>, _>(&self.deltas)?,
                4 => out.push_bind_param::<Array<Binary>, _>(&self.hashes)?,
                5 => out.push_bind_param::<Array<Timestamptz>, _>(&self.at)?,
                6 | 7 => out.push_bind_param::<BigInt, _>(&MAX_SCORE)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Splits `actions` into rounds in which each user and each action id appears once, keeping
/// their order (a user's second action goes to the next round); returns indexes.
pub(super) fn rounds(actions: &[&ScoredAction]) -> Vec<Vec<usize>> {
    let mut left: Vec<usize> = (0..actions.len()).collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (mut users, mut ids) = (HashSet::new(), HashSet::new());
        let (round, rest): (Vec<usize>, Vec<usize>) = left.into_iter().partition(|&i| {
            let a = actions[i];
            // Both sets must take the action, so check before inserting into either.
            if users.contains(&a.user_id) || ids.contains(&a.action_id) {
                return false;
            }
            users.insert(a.user_id);
            ids.insert(a.action_id);
            true
        });
        out.push(round);
        left = rest;
    }
    out
}

/// What a row of an earlier use means for `action`.
fn repeat(row: &Row, action: &ScoredAction) -> Result<ApplyScore, StoreError> {
    let same = row.2 == Some(action.user_id.0) && row.3.as_slice() == action.token_hash;
    Ok(if same {
        ApplyScore::Replayed(receipt(row)?)
    } else {
        ApplyScore::UsedOtherwise
    })
}

fn receipt(row: &Row) -> Result<ScoreReceipt, StoreError> {
    Ok(ScoreReceipt {
        old_score: row.4,
        new_score: row.5,
        rank: u64::try_from(row.6).map_err(|_| StoreError::Corrupt("negative rank".into()))?,
        delta: row.7,
    })
}

/// Reads `action`'s outcome from the round's rows: none means the guard refused (overflow).
fn outcome(rows: &[Row], action: &ScoredAction) -> Result<ApplyScore, StoreError> {
    let Some(row) = rows.iter().find(|r| r.1 == action.action_id) else {
        return Ok(ApplyScore::Overflow);
    };
    match row.0 {
        SCORED => Ok(ApplyScore::Applied {
            receipt: receipt(row)?,
            reached_at: row
                .8
                .ok_or_else(|| StoreError::Corrupt("a score without its time".into()))?,
        }),
        USED => repeat(row, action),
        NO_ACCOUNT => Ok(ApplyScore::NoAccount),
        other => Err(StoreError::Corrupt(format!("score outcome {other}"))),
    }
}

/// Runs [`APPLY`] once for `round` (each user and action id once) on `conn`, outside any
/// transaction: everything of it commits, or nothing.
async fn run_round(
    conn: &mut AsyncPgConnection,
    round: &[&ScoredAction],
) -> Result<Vec<Row>, Error> {
    ApplyQuery::of(round).load::<Row>(conn).await
}

/// Whether a failed round may succeed action by action: one of its rows was refused (e.g. an
/// action id used meanwhile by another connection). A lost connection, a timeout or a lock wait
/// too long would fail each action again, so those answer the whole round at once.
fn refused(error: &Error) -> bool {
    matches!(
        error,
        Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::SerializationFailure,
            _
        )
    )
}

/// Applies one action alone; a concurrent first use of its id (the primary key taken after this
/// statement's lookup) is answered by running it again, which then finds that use.
async fn apply_one(
    conn: &mut AsyncPgConnection,
    action: &ScoredAction,
) -> Result<ApplyScore, StoreError> {
    let round = [action];
    let rows = match run_round(conn, &round).await {
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            run_round(conn, &round).await
        }
        other => other,
    }
    .map_err(query_error)?;
    outcome(&rows, action)
}

/// Applies `actions` together, as the group commit does with concurrent calls: in [`rounds`],
/// each one statement (its own transaction) on one pooled connection; a round refused as a
/// whole is retried one action at a time, so one action's failure never fails the others.
/// Outcomes are in the order of `actions`.
pub(super) async fn apply_all(
    pool: &PgPool,
    actions: &[&ScoredAction],
) -> Vec<Result<ApplyScore, StoreError>> {
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => return actions.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut out: Vec<Option<Result<ApplyScore, StoreError>>> =
        actions.iter().map(|_| None).collect();
    for round in rounds(actions) {
        let members: Vec<&ScoredAction> = round.iter().map(|&i| actions[i]).collect();
        if let [only] = members.as_slice() {
            out[round[0]] = Some(apply_one(&mut conn, only).await);
            continue;
        }
        match run_round(&mut conn, &members).await {
            Ok(rows) => {
                for (&i, action) in round.iter().zip(&members) {
                    out[i] = Some(outcome(&rows, action));
                }
            }
            Err(e) if refused(&e) => {
                for (&i, action) in round.iter().zip(&members) {
                    out[i] = Some(apply_one(&mut conn, action).await);
                }
            }
            Err(e) => {
                let e = query_error(e);
                for &i in &round {
                    out[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::Corrupt("an action left out".into()))))
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use keel_domain::identity::user::UserId;
    use keel_domain::scoreboard::token_hash;

    use super::*;

    /// A one-point action of `user` with id `id`, for tests of this module and its siblings.
    pub(in crate::scoreboard) fn action(user: UserId, id: Uuid) -> ScoredAction {
        ScoredAction {
            action_id: id,
            user_id: user,
            action_type: "COMPLETE_TASK".into(),
            delta: 1,
            token_hash: token_hash("t"),
            at: Utc::now(),
        }
    }

    #[test]
    fn the_statement_has_one_placeholder_per_bound_value() {
        assert_eq!(APPLY.matches("$?").count(), 8);
        assert!(!APPLY.contains("$1"), "placeholders are numbered by diesel");
    }

    #[test]
    fn rounds_hold_each_user_and_action_once_in_order() {
        let (a, b) = (UserId(Uuid::now_v7()), UserId(Uuid::now_v7()));
        let same = Uuid::now_v7();
        let actions = [
            action(a, Uuid::now_v7()),
            action(b, same),
            action(a, Uuid::now_v7()),
            action(b, Uuid::now_v7()),
            action(b, same),
            action(a, Uuid::now_v7()),
        ];
        let refs: Vec<&ScoredAction> = actions.iter().collect();
        assert_eq!(rounds(&refs), vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
        assert!(rounds(&[]).is_empty());
    }
}
