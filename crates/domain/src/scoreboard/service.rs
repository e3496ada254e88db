//! The scoreboard use cases: start an action, score it once, read the board.
//!
//! Postgres (the [`ScoreStore`]) is the truth; the cache ([`BoardCache`]) is written after each
//! commit and read first, and any cache failure falls back to the store (see [`super::cache`]);
//! rebuilds and the drift check are in [`super::drift`].

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ring::digest;
use uuid::Uuid;

use super::actions::ActionTable;
use super::cache::BoardCache;
use super::ranking::{Standing, whole_second};
use super::store::{ApplyScore, RankedStanding, ScoreReceipt, ScoreStore, ScoredAction};
use super::token::{ActionClaims, ActionTokenSigner, TokenError};
use crate::identity::user::UserId;
use crate::{Clock, StoreError};

/// How long an action token stays usable.
pub const ACTION_TTL: Duration = Duration::minutes(5);
/// Largest board page.
pub const MAX_TOP: u32 = 100;

/// Why a scoreboard use case did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The server has no such action type.
    #[error("unknown action type")]
    UnknownAction,
    /// The token was refused (malformed, forged, expired).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The body's action id is not the token's.
    #[error("the action id does not match the token")]
    ActionMismatch,
    /// The token belongs to another user.
    #[error("the action token belongs to another user")]
    Foreign,
    /// The action was already used with a different request.
    #[error("the action was already used")]
    AlreadyUsed,
    /// The score would pass the board's maximum.
    #[error("the score would overflow")]
    Overflow,
    /// The caller's account no longer exists.
    #[error("the account no longer exists")]
    NoAccount,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A started action: the token the client sends back when it has done the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedAction {
    /// The action id.
    pub action_id: Uuid,
    /// The signed token.
    pub token: String,
    /// When it stops being usable.
    pub expires_at: DateTime<Utc>,
}

/// A scored action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scored {
    /// The response (the first one, on a replay).
    pub receipt: ScoreReceipt,
    /// Whether this repeats an earlier use with the same token.
    pub replayed: bool,
}

/// The scoreboard use cases.
#[derive(Clone)]
pub struct ScoreService {
    store: Arc<dyn ScoreStore>,
    cache: Option<BoardCache>,
    signer: Arc<ActionTokenSigner>,
    table: Arc<ActionTable>,
    clock: Arc<dyn Clock>,
}

impl ScoreService {
    /// The use cases over `store` (and `cache` in front of it, if any).
    pub fn new(
        store: Arc<dyn ScoreStore>,
        cache: Option<BoardCache>,
        signer: Arc<ActionTokenSigner>,
        table: Arc<ActionTable>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            cache,
            signer,
            table,
            clock,
        }
    }

    /// Starts an action of `action_type` for `user`: a token worth at most the table's delta,
    /// usable once within [`ACTION_TTL`].
    pub fn start(&self, user: UserId, action_type: &str) -> Result<StartedAction, ScoreError> {
        let max_score = self
            .table
            .delta(action_type)
            .ok_or(ScoreError::UnknownAction)?;
        let expires_at = whole_second(self.clock.now() + ACTION_TTL);
        let claims = ActionClaims {
            action_id: Uuid::now_v7(),
            user_id: user,
            action_type: action_type.to_owned(),
            max_score,
            expires_at,
        };
        Ok(StartedAction {
            action_id: claims.action_id,
            token: self.signer.sign(&claims),
            expires_at,
        })
    }

    /// Scores `action_id` for `user` with `token`: checks the signature, expiry, owner and single
    /// use; the delta comes from the server's table (never more than the token's `max_score`).
    /// A repeat with the same token returns the first response.
    pub async fn score(
        &self,
        user: UserId,
        action_id: Uuid,
        token: &str,
    ) -> Result<Scored, ScoreError> {
        let now = self.clock.now();
        let claims = self.signer.verify(token, now)?;
        if claims.action_id != action_id {
            return Err(ScoreError::ActionMismatch);
        }
        if claims.user_id != user {
            return Err(ScoreError::Foreign);
        }
        let delta = self
            .table
            .delta(&claims.action_type)
            .ok_or(ScoreError::UnknownAction)?
            .min(claims.max_score);
        let action = ScoredAction {
            action_id,
            user_id: user,
            action_type: claims.action_type,
            delta,
            token_hash: token_hash(token),
            at: whole_second(now),
        };
        match self.store.apply(&action).await? {
            ApplyScore::Applied {
                receipt,
                reached_at,
            } => {
                self.write_through(&Standing {
                    user_id: user,
                    score: receipt.new_score,
                    reached_at,
                })
                .await;
                Ok(Scored {
                    receipt,
                    replayed: false,
                })
            }
            ApplyScore::Replayed(receipt) => Ok(Scored {
                receipt,
                replayed: true,
            }),
            ApplyScore::UsedOtherwise => Err(ScoreError::AlreadyUsed),
            ApplyScore::Overflow => Err(ScoreError::Overflow),
            ApplyScore::NoAccount => Err(ScoreError::NoAccount),
        }
    }

    /// The best `limit` standings (1..=[`MAX_TOP`]), best first: from the cache when it is
    /// fresh and answers, else from the store.
    pub async fn top(&self, limit: u32) -> Result<Vec<RankedStanding>, ScoreError> {
        self.read_top(limit.clamp(1, MAX_TOP)).await
    }

    /// `user`'s rank and standing, from the cache first like [`Self::top`].
    pub async fn rank(&self, user: UserId) -> Result<Option<RankedStanding>, ScoreError> {
        self.read_rank(user).await
    }

    /// Removes `user` from the board (store, then cache); whether they had a standing.
    pub async fn remove_user(&self, user: UserId) -> Result<bool, ScoreError> {
        let had = self.store.remove_user(user).await?;
        self.remove_through(user).await;
        Ok(had)
    }

    /// The store.
    pub(super) fn store(&self) -> &dyn ScoreStore {
        self.store.as_ref()
    }

    /// The cache, if any.
    pub(super) fn cache(&self) -> Option<&BoardCache> {
        self.cache.as_ref()
    }

    /// Now, from the service's clock.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// SHA-256 of a token, as stored with its action.
pub fn token_hash(token: &str) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
