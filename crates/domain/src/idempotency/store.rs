//! The `IdempotencyStore` port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Claim, ClaimOutcome, IdempotencyKey, IdempotencyPolicy, RequestFingerprint, Scope,
    StoredResponse,
};
use crate::StoreError;

/// Durable record of idempotency keys.
///
/// Implementations apply [`super::decide`] atomically per (scope, key): of any number of
/// concurrent claims of one key, exactly one gets [`ClaimOutcome::Claimed`].
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request, or says why it cannot be claimed.
    async fn claim(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        policy: IdempotencyPolicy,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Stores the final response of a claimed request.
    ///
    /// Fails with [`StoreError::Conflict`] when the claim was lost (its lease ran out and another
    /// request took the key over), so a presumed-dead request can never overwrite a live one.
    async fn complete(&self, claim: &Claim, response: &StoredResponse) -> Result<(), StoreError>;

    /// Tells the store that a use case completed `claim` inside its own transaction (with the
    /// adapter's transactional completion), so layers in front of the durable record can learn
    /// the response. The durable record is already written; the default does nothing.
    async fn completed_in_transaction(
        &self,
        claim: &Claim,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let _ = (claim, response);
        Ok(())
    }

    /// Gives a claim up without a final response (the request failed with a server error), so a
    /// retry may claim the key at once. A lost claim is left alone.
    async fn abandon(&self, claim: &Claim) -> Result<(), StoreError>;

    /// Deletes every record that expired at or before `now`; returns how many were deleted.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}
