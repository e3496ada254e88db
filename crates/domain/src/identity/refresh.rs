//! Refresh-token families: rotation on every use, reuse detection, revocation.
//!
//! A login starts a *family* with one refresh token. Each use of a token ([`RefreshTokenStore::rotate`])
//! marks it used and issues the next token of the same family, in one atomic step. A token is
//! stored only as the SHA-256 hash of its secret. Presenting a token that was already used means
//! the secret leaked (the thief or the owner is replaying an old token): the whole family is
//! revoked, so neither party can go on refreshing ([`RotateOutcome::Reused`]).
//!
//! [`decide_rotation`] is the rule every store applies to the presented token, under its lock.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::user::UserId;
use crate::StoreError;

/// How long a refresh token lives (DESIGN.md §2): 7 days.
pub fn refresh_token_ttl() -> Duration {
    Duration::days(7)
}

/// One refresh token as issued: who it belongs to, which family, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// SHA-256 of the token's secret (the secret itself is never stored).
    pub token_hash: [u8; 32],
    /// The family (one login) the token belongs to.
    pub family_id: Uuid,
    /// The token's owner.
    pub user_id: UserId,
    /// After this instant the token is refused.
    pub expires_at: DateTime<Utc>,
}

/// A stored token with its state, as a store sees it when deciding a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefreshToken {
    /// The token as issued.
    pub record: RefreshRecord,
    /// When it was rotated (exchanged for the next token), if it was.
    pub used_at: Option<DateTime<Utc>>,
    /// When its family was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What presenting a refresh token came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was valid: it is now used and the next token of its family is stored.
    Rotated {
        /// The token's owner.
        user_id: UserId,
        /// The family, which the next token continues.
        family_id: Uuid,
    },
    /// The token had already been rotated: the whole family is now revoked.
    Reused {
        /// The token's owner.
        user_id: UserId,
        /// The family that was revoked.
        family_id: Uuid,
    },
    /// The token expired; nothing changed.
    Expired,
    /// No such token (never issued, or its user was deleted).
    Unknown,
    /// The token's family was revoked (logout, reuse, account action); nothing changed.
    Revoked,
}

/// What a store must do with a presented token, decided by [`decide_rotation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationDecision {
    /// Answer with this outcome and change nothing.
    Refuse(RotateOutcome),
    /// Revoke every token of the family, then answer [`RotateOutcome::Reused`].
    RevokeFamily {
        /// The token's owner.
        user_id: UserId,
        /// The family to revoke.
        family_id: Uuid,
    },
    /// Mark the token used and store the next token of its family, then answer
    /// [`RotateOutcome::Rotated`].
    Rotate {
        /// The token's owner, and the next token's.
        user_id: UserId,
        /// The family the next token joins.
        family_id: Uuid,
    },
}

impl RotationDecision {
    /// The outcome to answer once the decision is carried out.
    pub fn outcome(self) -> RotateOutcome {
        match self {
            RotationDecision::Refuse(outcome) => outcome,
            RotationDecision::RevokeFamily { user_id, family_id } => {
                RotateOutcome::Reused { user_id, family_id }
            }
            RotationDecision::Rotate { user_id, family_id } => {
                RotateOutcome::Rotated { user_id, family_id }
            }
        }
    }
}

/// The rotation rule: unknown → refuse; family revoked → refuse; already used → revoke the
/// family; expired (at or after `expires_at`) → refuse; otherwise rotate.
pub fn decide_rotation(token: Option<&StoredRefreshToken>, now: DateTime<Utc>) -> RotationDecision {
    let Some(token) = token else {
        return RotationDecision::Refuse(RotateOutcome::Unknown);
    };
    let (user_id, family_id) = (token.record.user_id, token.record.family_id);
    if token.revoked_at.is_some() {
        RotationDecision::Refuse(RotateOutcome::Revoked)
    } else if token.used_at.is_some() {
        RotationDecision::RevokeFamily { user_id, family_id }
    } else if now >= token.record.expires_at {
        RotationDecision::Refuse(RotateOutcome::Expired)
    } else {
        RotationDecision::Rotate { user_id, family_id }
    }
}

/// Durable record of refresh tokens, by hash.
///
/// [`RefreshTokenStore::rotate`] is atomic per token: of any number of concurrent rotations of
/// one token exactly one gets [`RotateOutcome::Rotated`]; the others see it used
/// ([`RotateOutcome::Reused`], revoking the family) or the family revoked
/// ([`RotateOutcome::Revoked`]).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Stores a token: the first of a new family (a login) or a token of an existing family.
    ///
    /// Fails with [`StoreError::Conflict`] when the hash is already stored or the user does not exist.
    async fn issue(&self, record: &RefreshRecord) -> Result<(), StoreError>;

    /// Presents the token whose hash is `presented_hash` and, if it is valid, replaces it with
    /// the token `next_hash` of the same family and owner, valid until `next_expires_at`.
    ///
    /// One atomic step that applies [`decide_rotation`] to the presented token.
    async fn rotate(
        &self,
        presented_hash: &[u8; 32],
        next_hash: &[u8; 32],
        next_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, StoreError>;

    /// Revokes every token of a family (logout); returns how many tokens were newly revoked.
    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Revokes every token of a user (all sessions); returns how many tokens were newly revoked.
    async fn revoke_user(&self, user_id: UserId, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(used: bool, revoked: bool, expires_in: i64, now: DateTime<Utc>) -> StoredRefreshToken {
        StoredRefreshToken {
            record: RefreshRecord {
                token_hash: [7; 32],
                family_id: Uuid::from_u128(1),
                user_id: UserId(Uuid::from_u128(2)),
                expires_at: now + Duration::seconds(expires_in),
            },
            used_at: used.then_some(now),
            revoked_at: revoked.then_some(now),
        }
    }

    #[test]
    fn rule_order_is_unknown_revoked_reused_expired_rotate() {
        let now = Utc::now();
        let user_id = UserId(Uuid::from_u128(2));
        let family_id = Uuid::from_u128(1);
        assert_eq!(
            decide_rotation(None, now),
            RotationDecision::Refuse(RotateOutcome::Unknown)
        );
        // Revoked wins over used and expired.
        assert_eq!(
            decide_rotation(Some(&token(true, true, -10, now)), now),
            RotationDecision::Refuse(RotateOutcome::Revoked)
        );
        // A used token revokes its family even after it expired.
        assert_eq!(
            decide_rotation(Some(&token(true, false, -10, now)), now),
            RotationDecision::RevokeFamily { user_id, family_id }
        );
        assert_eq!(
            decide_rotation(Some(&token(false, false, 0, now)), now),
            RotationDecision::Refuse(RotateOutcome::Expired)
        );
        let decision = decide_rotation(Some(&token(false, false, 1, now)), now);
        assert_eq!(decision, RotationDecision::Rotate { user_id, family_id });
        assert_eq!(
            decision.outcome(),
            RotateOutcome::Rotated { user_id, family_id }
        );
        assert_eq!(
            RotationDecision::RevokeFamily { user_id, family_id }.outcome(),
            RotateOutcome::Reused { user_id, family_id }
        );
    }

    #[test]
    fn ttl_is_seven_days() {
        assert_eq!(refresh_token_ttl(), Duration::hours(168));
    }
}
