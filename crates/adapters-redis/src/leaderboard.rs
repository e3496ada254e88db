//! The leaderboard cache: one Redis sorted set per board, in front of the score store.
//!
//! # Keys
//!
//! A board lives at `{prefix}:{board:<name>}` (`global` unless [`RedisLeaderboard::with_board`]
//! says otherwise). The braces are a Redis Cluster hash tag: the temporary key of
//! [`LeaderboardCache::replace_all`], `{prefix}:{board:<name>}:tmp:<uuid>`, extends the board's
//! key, so both hash to the same slot and `RENAME` works on a cluster too. So does the marker
//! `{prefix}:{board:<name>}:built`, set in the same `MULTI` as the switch: reads check it in the
//! same round trip and answer [`CacheRead::Unbuilt`] without it, so a Redis that restarted empty
//! (or whose keys were evicted) is rebuilt instead of being read as an empty board.
//!
//! # Members and scores
//!
//! The member is the user id as a lower-case hyphenated UUID and the score is
//! [`composite`] of the standing (see [`keel_domain::scoreboard::ranking`]): `ZRANGE key 0 n-1`
//! reads the board best first, in exactly the order of [`keel_domain::scoreboard::board_order`]
//! (ties in the composite go to the lower member, as Postgres breaks them by user id). The
//! composite is a whole number below 2^53 in magnitude, so it is sent as an integer and Redis
//! stores it exactly. A member or score this adapter did not write reads as
//! [`StoreError::Corrupt`]. A user's score only grows, so a lower composite is a newer standing:
//! [`LeaderboardCache::record`] is `ZADD … LT`, and write-throughs arriving out of order never
//! put an older standing back.

use std::time::Duration;

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::scoreboard::{CacheRead, LeaderboardCache, Standing, composite, decompose};
use uuid::Uuid;

use crate::RedisPool;

/// The board used by [`RedisLeaderboard::new`].
pub const DEFAULT_BOARD: &str = "global";

/// Members sent per `ZADD` while [`LeaderboardCache::replace_all`] fills the temporary key.
pub const REPLACE_CHUNK: usize = 1000;

/// How long a temporary key left by a crashed rebuild survives (the switch removes the expiry).
pub const TMP_TTL: Duration = Duration::from_secs(600);

/// The [`LeaderboardCache`] as a Redis sorted set shared by every node with the same prefix.
#[derive(Debug, Clone)]
pub struct RedisLeaderboard {
    pool: RedisPool,
    key: String,
    built: String,
}

impl RedisLeaderboard {
    /// The [`DEFAULT_BOARD`] board, stored through `pool`.
    pub fn new(pool: RedisPool) -> Self {
        Self::with_board(pool, DEFAULT_BOARD)
    }

    /// The board `name`, stored through `pool` at `{prefix}:{board:<name>}`.
    ///
    /// `name` must not contain `{` or `}` (it sits inside the key's hash tag).
    pub fn with_board(pool: RedisPool, name: &str) -> Self {
        let key = pool.key(&format!("{{board:{name}}}"));
        let built = format!("{key}:built");
        Self { pool, key, built }
    }

    /// The sorted set's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key whose presence says the board was built.
    pub fn built_key(&self) -> &str {
        &self.built
    }

    /// A fresh temporary key in the board's hash slot.
    fn tmp_key(&self) -> String {
        format!("{}:tmp:{}", self.key, Uuid::new_v4())
    }

    /// Fills `tmp` with `entries` (in chunks) and switches it in place of the board.
    async fn fill_and_switch(
        &self,
        tmp: &str,
        entries: &[(i64, String)],
    ) -> Result<(), StoreError> {
        for chunk in entries.chunks(REPLACE_CHUNK) {
            let (tmp, chunk) = (tmp.to_owned(), chunk.to_vec());
            self.pool
                .run(|mut conn| async move {
                    redis::pipe()
                        .atomic()
                        .cmd("ZADD")
                        .arg(&tmp)
                        .arg(chunk)
                        .ignore()
                        .cmd("EXPIRE")
                        .arg(&tmp)
                        .arg(TMP_TTL.as_secs())
                        .ignore()
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await?;
        }
        let (tmp, key, built) = (tmp.to_owned(), self.key.clone(), self.built.clone());
        self.pool
            .run(|mut conn| async move {
                // RENAME carries the temporary key's expiry over: drop it in the same step.
                redis::pipe()
                    .atomic()
                    .cmd("RENAME")
                    .arg(tmp)
                    .arg(&key)
                    .ignore()
                    .cmd("PERSIST")
                    .arg(&key)
                    .ignore()
                    .cmd("SET")
                    .arg(built)
                    .arg(1)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Empties the board and marks it built, in one step.
    async fn clear_built(&self) -> Result<(), StoreError> {
        let (key, built) = (self.key.clone(), self.built.clone());
        self.pool
            .run(|mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(key)
                    .ignore()
                    .cmd("SET")
                    .arg(built)
                    .arg(1)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }
}

/// `answer` when the board's marker was present, else [`CacheRead::Unbuilt`].
fn if_built<T>(
    built: bool,
    answer: impl FnOnce() -> Result<T, StoreError>,
) -> Result<CacheRead<T>, StoreError> {
    if built {
        answer().map(CacheRead::Answer)
    } else {
        Ok(CacheRead::Unbuilt)
    }
}

/// The sorted-set score of `standing`, as the integer it is; out of range is `Corrupt`.
fn score_of(standing: &Standing) -> Result<i64, StoreError> {
    let composite = composite(standing).map_err(|e| {
        StoreError::Corrupt(format!(
            "the standing of user {} cannot go on the board: {e}",
            standing.user_id.0
        ))
    })?;
    // A whole number below 2^53 in magnitude: the conversion is exact.
    Ok(composite as i64)
}

/// The member of `user`: its lower-case hyphenated UUID.
fn member_of(user: UserId) -> String {
    user.0.hyphenated().to_string()
}

/// A standing read back from a member and its score.
fn standing_of(member: &str, score: f64) -> Result<Standing, StoreError> {
    let user = Uuid::parse_str(member)
        .ok()
        .filter(|id| id.hyphenated().to_string() == member)
        .ok_or_else(|| StoreError::Corrupt(format!("board member {member:?} is not a user id")))?;
    let (score, reached_at) = decompose(score).ok_or_else(|| {
        StoreError::Corrupt(format!("board score {score} of {member} is not a standing"))
    })?;
    Ok(Standing {
        user_id: UserId(user),
        score,
        reached_at,
    })
}

#[async_trait]
impl LeaderboardCache for RedisLeaderboard {
    async fn record(&self, standing: &Standing) -> Result<(), StoreError> {
        let score = score_of(standing)?;
        let (key, member) = (self.key.clone(), member_of(standing.user_id));
        self.pool
            .run(|mut conn| async move {
                redis::cmd("ZADD")
                    .arg(key)
                    .arg("LT")
                    .arg(score)
                    .arg(member)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(drop)
    }

    async fn top(&self, limit: u32) -> Result<CacheRead<Vec<Standing>>, StoreError> {
        // `ZRANGE key 0 -1` would be the whole board: ask for one and drop it.
        let stop = i64::from(limit.max(1)) - 1;
        let (key, built) = (self.key.clone(), self.built.clone());
        let (present, entries): (bool, Vec<(String, f64)>) = self
            .pool
            .run(|mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("EXISTS")
                    .arg(built)
                    .cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(stop)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if_built(present, || {
            entries
                .iter()
                .take(limit as usize)
                .map(|(member, score)| standing_of(member, *score))
                .collect()
        })
    }

    async fn rank(&self, user: UserId) -> Result<CacheRead<Option<(u64, Standing)>>, StoreError> {
        let (key, built, member) = (self.key.clone(), self.built.clone(), member_of(user));
        let (present, rank, score): (bool, Option<u64>, Option<f64>) = self
            .pool
            .run(|mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("EXISTS")
                    .arg(built)
                    .cmd("ZRANK")
                    .arg(&key)
                    .arg(&member)
                    .cmd("ZSCORE")
                    .arg(&key)
                    .arg(&member)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let member = member_of(user);
        if_built(present, || match (rank, score) {
            (Some(rank), Some(score)) => Ok(Some((rank + 1, standing_of(&member, score)?))),
            _ => Ok(None),
        })
    }

    async fn remove(&self, user: UserId) -> Result<(), StoreError> {
        let (key, member) = (self.key.clone(), member_of(user));
        self.pool
            .run(|mut conn| async move {
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(member)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(drop)
    }

    async fn replace_all(&self, standings: &[Standing]) -> Result<(), StoreError> {
        if standings.is_empty() {
            return self.clear_built().await;
        }
        // Encode everything first: a bad standing leaves the board and Redis untouched.
        let entries = standings
            .iter()
            .map(|s| Ok((score_of(s)?, member_of(s.user_id))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let tmp = self.tmp_key();
        let switched = self.fill_and_switch(&tmp, &entries).await;
        if switched.is_err() {
            let cleanup = tmp.clone();
            let deleted = self
                .pool
                .run(|mut conn| async move {
                    redis::cmd("DEL")
                        .arg(cleanup)
                        .query_async::<i64>(&mut conn)
                        .await
                })
                .await;
            if let Err(e) = deleted {
                tracing::warn!(key = %tmp, error = %e, "temporary board key not deleted; it expires");
            }
        }
        switched
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use keel_domain::scoreboard::ranking::BOARD_EPOCH_SECS;

    use super::*;

    fn standing(score: i64, seconds: i64) -> Standing {
        Standing {
            user_id: UserId(Uuid::from_u128(0xABCD_EF01_2345_6789_ABCD_EF01_2345_6789)),
            score,
            reached_at: DateTime::from_timestamp(BOARD_EPOCH_SECS + seconds, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn standings_round_trip_through_member_and_score() {
        let s = standing(12_345, 99_999);
        let member = member_of(s.user_id);
        assert_eq!(member, "abcdef01-2345-6789-abcd-ef0123456789");
        let score = score_of(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(standing_of(&member, score as f64).ok(), Some(s));
    }

    #[test]
    fn bad_standings_members_and_scores_are_corrupt() {
        assert!(matches!(
            score_of(&standing(-1, 0)),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            score_of(&standing(1, -1)),
            Err(StoreError::Corrupt(_))
        ));
        for member in [
            "not-a-uuid",
            "ABCDEF01-2345-6789-ABCD-EF0123456789",
            "abcdef0123456789abcdef0123456789",
        ] {
            assert!(
                matches!(standing_of(member, -1.0), Err(StoreError::Corrupt(_))),
                "{member}"
            );
        }
        for score in [1.0, -0.5, f64::NAN, f64::NEG_INFINITY] {
            assert!(
                matches!(
                    standing_of("abcdef01-2345-6789-abcd-ef0123456789", score),
                    Err(StoreError::Corrupt(_))
                ),
                "{score}"
            );
        }
    }
}
