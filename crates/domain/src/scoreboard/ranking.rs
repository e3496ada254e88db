//! The board's one ordering — score descending, then who reached it first, then user id — and
//! its exact encoding as a Redis sorted-set score.
//!
//! Postgres orders by `score DESC, reached_at ASC, user_id ASC`. Redis orders a sorted set by a
//! double, then by member bytes ascending; a double holds integers up to 2^53 exactly. So keel
//! stores `-(score · 2^31 + (2^31 − 1 − seconds since 2024-01-01))` with the user id (lower-case
//! hyphenated UUID, whose byte order is the UUID's order) as member and reads it with `ZRANGE`
//! ascending: a higher score comes first, an earlier `reached_at` breaks a tie, and the member
//! order breaks an exact tie the way `user_id ASC` does. That needs `score < 2^22` and
//! `reached_at` in whole seconds within 2024-01-01 … 2092-01-19; [`MAX_SCORE`] is the overflow
//! guard, and `reached_at` is stored truncated to the second everywhere.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use crate::identity::user::UserId;

/// The highest score a user can reach (2^22 − 1): the composite stays below 2^53.
pub const MAX_SCORE: i64 = (1 << SCORE_BITS) - 1;
/// Bits of the composite holding the score.
const SCORE_BITS: u32 = 22;
/// Bits of the composite holding the inverted time.
const TIME_BITS: u32 = 31;
/// 2024-01-01T00:00:00Z: second 0 of the composite's clock.
pub const BOARD_EPOCH_SECS: i64 = 1_704_067_200;

/// One user's place on a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The user.
    pub user_id: UserId,
    /// Their score.
    pub score: i64,
    /// When they first reached it (whole seconds).
    pub reached_at: DateTime<Utc>,
}

/// Why a standing cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RankingError {
    /// The score is negative or above [`MAX_SCORE`].
    #[error("the score is outside 0..={MAX_SCORE}")]
    ScoreOutOfRange,
    /// The time is before 2024 or after the composite's range.
    #[error("reached_at is outside the board's clock")]
    TimeOutOfRange,
}

/// The board order: `a` before `b` when it ranks higher.
pub fn board_order(a: &Standing, b: &Standing) -> Ordering {
    b.score
        .cmp(&a.score)
        .then(a.reached_at.cmp(&b.reached_at))
        .then(a.user_id.0.cmp(&b.user_id.0))
}

/// Truncates `at` to the whole second (how `reached_at` is stored).
pub fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// The sorted-set score of `standing` (see the module docs); exact in an `f64`.
pub fn composite(standing: &Standing) -> Result<f64, RankingError> {
    if !(0..=MAX_SCORE).contains(&standing.score) {
        return Err(RankingError::ScoreOutOfRange);
    }
    let seconds = standing.reached_at.timestamp() - BOARD_EPOCH_SECS;
    let max_time = (1i64 << TIME_BITS) - 1;
    if !(0..=max_time).contains(&seconds) {
        return Err(RankingError::TimeOutOfRange);
    }
    let packed = (standing.score << TIME_BITS) + (max_time - seconds);
    // packed < 2^53, so the conversion is exact.
    Ok(-(packed as f64))
}

/// The score and `reached_at` packed in a sorted-set score written by [`composite`].
pub fn decompose(composite: f64) -> Option<(i64, DateTime<Utc>)> {
    let packed = -composite;
    if !(0.0..9_007_199_254_740_992.0).contains(&packed) || packed.fract() != 0.0 {
        return None;
    }
    let packed = packed as i64;
    let max_time = (1i64 << TIME_BITS) - 1;
    let score = packed >> TIME_BITS;
    let seconds = max_time - (packed & max_time);
    Some((
        score,
        DateTime::from_timestamp(BOARD_EPOCH_SECS + seconds, 0)?,
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn at(seconds_after_epoch: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(BOARD_EPOCH_SECS + seconds_after_epoch, 0).expect("in range")
    }

    fn standing(score: i64, seconds: i64, user: u128) -> Standing {
        Standing {
            user_id: UserId(Uuid::from_u128(user)),
            score,
            reached_at: at(seconds),
        }
    }

    /// How Redis orders members: by score ascending, then by member bytes ascending.
    fn redis_order(a: &Standing, b: &Standing) -> Ordering {
        let (ca, cb) = (
            composite(a).expect("encodes"),
            composite(b).expect("encodes"),
        );
        ca.partial_cmp(&cb)
            .expect("finite")
            .then(a.user_id.0.to_string().cmp(&b.user_id.0.to_string()))
    }

    #[test]
    fn the_bounds_encode_exactly() {
        let max_time = (1i64 << TIME_BITS) - 1;
        for s in [
            standing(0, 0, 1),
            standing(MAX_SCORE, 0, 1),
            standing(MAX_SCORE, max_time, 1),
            standing(0, max_time, 1),
        ] {
            let c = composite(&s).expect("in range");
            assert!(c.abs() < 9_007_199_254_740_992.0, "below 2^53");
            assert_eq!(decompose(c), Some((s.score, s.reached_at)));
        }
        assert_eq!(
            composite(&standing(MAX_SCORE + 1, 0, 1)),
            Err(RankingError::ScoreOutOfRange)
        );
        assert_eq!(
            composite(&standing(-1, 0, 1)),
            Err(RankingError::ScoreOutOfRange)
        );
        assert_eq!(
            composite(&standing(1, -1, 1)),
            Err(RankingError::TimeOutOfRange)
        );
        assert_eq!(
            composite(&standing(1, max_time + 1, 1)),
            Err(RankingError::TimeOutOfRange)
        );
        // Neighbours at the top of the range stay distinct and ordered.
        let high = composite(&standing(MAX_SCORE, 0, 1)).expect("in range");
        let next = composite(&standing(MAX_SCORE, 1, 1)).expect("in range");
        assert!(high < next, "earlier is better, so sorts first");
    }

    #[test]
    fn ties_go_to_who_reached_the_score_first_then_to_the_lower_id() {
        let early = standing(50, 10, 9);
        let late = standing(50, 11, 1);
        let same_time_low = standing(50, 11, 0);
        let better = standing(51, 99, 5);
        let mut board = vec![
            late.clone(),
            early.clone(),
            same_time_low.clone(),
            better.clone(),
        ];
        board.sort_by(board_order);
        assert_eq!(board, vec![better, early, same_time_low, late]);
    }

    proptest! {
        /// Redis's order of composites and members equals the Postgres order for any standings.
        #[test]
        fn redis_and_postgres_orders_agree(
            a in (0..=MAX_SCORE, 0i64..(1 << 31), any::<u128>()),
            b in (0..=MAX_SCORE, 0i64..(1 << 31), any::<u128>()),
        ) {
            let (a, b) = (standing(a.0, a.1, a.2), standing(b.0, b.1, b.2));
            prop_assert_eq!(redis_order(&a, &b), board_order(&a, &b));
        }

        /// Close standings (same score, near times, near ids) agree too.
        #[test]
        fn close_standings_agree(score in 0..=MAX_SCORE, t in 0i64..1000, dt in 0i64..2, id in 0u128..4, did in 0u128..4) {
            let (a, b) = (standing(score, t, id), standing(score, t + dt, did));
            prop_assert_eq!(redis_order(&a, &b), board_order(&a, &b));
        }
    }
}
