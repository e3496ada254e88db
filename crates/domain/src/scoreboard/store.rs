//! The scoreboard's ports: `ScoreStore` (Postgres, the truth) and `LeaderboardCache` (a Redis
//! sorted set in front of it, never the only record).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ranking::Standing;
use crate::StoreError;
use crate::identity::user::UserId;

/// One use of an action token, as the store records it (single use: its id is unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoredAction {
    /// The action (from the token).
    pub action_id: Uuid,
    /// The user it scores for.
    pub user_id: UserId,
    /// Its type.
    pub action_type: String,
    /// Score added (server-decided, positive).
    pub delta: i64,
    /// SHA-256 of the token used: a repeat with the same token replays, another is refused.
    pub token_hash: [u8; 32],
    /// When (whole seconds; becomes `reached_at`).
    pub at: DateTime<Utc>,
}

/// The first response to an action, kept with it and replayed on a repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreReceipt {
    /// Score before.
    pub old_score: i64,
    /// Score after.
    pub new_score: i64,
    /// Rank right after (1 = top).
    pub rank: u64,
    /// Score added.
    pub delta: i64,
}

/// What [`ScoreStore::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyScore {
    /// Scored now, with the new standing's `reached_at`.
    Applied {
        /// The response.
        receipt: ScoreReceipt,
        /// When the new score was reached.
        reached_at: DateTime<Utc>,
    },
    /// The action was used before with the same token: its first response.
    Replayed(ScoreReceipt),
    /// The action was used before with another token (or by another user).
    UsedOtherwise,
    /// The new score would pass [`super::MAX_SCORE`]: nothing changed.
    Overflow,
    /// The user has no account (it was deleted while their tokens were still valid): nothing
    /// changed. Only a store that knows the accounts answers this.
    NoAccount,
}

/// A page of one board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedStanding {
    /// 1-based rank.
    pub rank: u64,
    /// The standing.
    pub standing: Standing,
    /// The user's display name, when the store knows it.
    pub display_name: Option<String>,
}

/// Scores, their history and the board order, in the system of record.
///
/// Contract (proved for every adapter by `keel_domain::testkit::score_store`):
/// - an action id is used at most once; the score row and the history row (old and new score)
///   change together; concurrent actions of one user sum exactly;
/// - the board order is [`super::board_order`]; `reached_at` is the latest action's time in
///   whole seconds (never moving backwards when actions commit out of order);
/// - a removed user leaves the board, and their history rows lose their user id;
/// - a store that knows the accounts refuses an action of a user without one
///   ([`ApplyScore::NoAccount`]), in the same atomic step as the write, so a deleted account never
///   scores again with a token it still holds.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ScoreStore: Send + Sync {
    /// Scores `action` once, atomically with its history row.
    async fn apply(&self, action: &ScoredAction) -> Result<ApplyScore, StoreError>;

    /// The best `limit` standings, best first.
    async fn top(&self, limit: u32) -> Result<Vec<RankedStanding>, StoreError>;

    /// `user`'s rank and standing, if they have scored.
    async fn rank(&self, user: UserId) -> Result<Option<RankedStanding>, StoreError>;

    /// Every standing (to rebuild the cache), best first, at most `limit` after `after`.
    async fn standings(
        &self,
        after: Option<Standing>,
        limit: u32,
    ) -> Result<Vec<Standing>, StoreError>;

    /// Removes `user` from the board and anonymises their history; returns whether they had a
    /// standing.
    async fn remove_user(&self, user: UserId) -> Result<bool, StoreError>;

    /// The current display names of `users`, in one round trip; unknown (deleted) users are
    /// absent. Boards read from the cache are named through this.
    async fn display_names(&self, users: &[UserId]) -> Result<HashMap<UserId, String>, StoreError>;
}

/// A read from a [`LeaderboardCache`]: its answer, or that it holds no built board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRead<T> {
    /// The board's answer.
    Answer(T),
    /// No board was built here (never filled by [`LeaderboardCache::replace_all`], or lost, e.g.
    /// with a Redis restart): an empty answer would be a lie, so the caller rebuilds it.
    Unbuilt,
}

/// The board as a sorted set (Redis), kept after the truth: written after each commit,
/// repaired by the drift job, rebuilt by admins.
///
/// Contract (proved for every adapter by `keel_domain::testkit::score_store::run_cache`):
/// - reads answer [`CacheRead::Unbuilt`] until the first [`replace_all`](Self::replace_all) and
///   again whenever the board was lost, never an empty or partial board;
/// - [`record`](Self::record) never replaces a user's standing with a worse one (write-throughs
///   of one user's actions may arrive out of order, and a user's score only grows);
/// - the order is [`super::board_order`], ranks are 1-based.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait LeaderboardCache: Send + Sync {
    /// Puts `standing` on the board unless the user already has a better one there.
    async fn record(&self, standing: &Standing) -> Result<(), StoreError>;

    /// The best `limit` standings, best first.
    async fn top(&self, limit: u32) -> Result<CacheRead<Vec<Standing>>, StoreError>;

    /// `user`'s 1-based rank and standing, if on the board.
    async fn rank(&self, user: UserId) -> Result<CacheRead<Option<(u64, Standing)>>, StoreError>;

    /// Removes `user`.
    async fn remove(&self, user: UserId) -> Result<(), StoreError>;

    /// Replaces the whole board with `standings` (atomically where the cache can) and marks it
    /// built.
    async fn replace_all(&self, standings: &[Standing]) -> Result<(), StoreError>;
}
