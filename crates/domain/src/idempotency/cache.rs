//! The `IdempotencyCache` port: a fast first layer in front of the durable record.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{IdempotencyKey, RequestFingerprint, Scope, StoredResponse};
use crate::StoreError;

/// What the cache knows about a key. Each entry carries its own end of validity, compared with
/// the caller's "now", so the cache agrees with the durable store's clock; the backend's own
/// expiry only cleans up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedState {
    /// A request holds the key until `lease_until`.
    Leased {
        /// Fingerprint of the holder.
        fingerprint: RequestFingerprint,
        /// End of the holder's lease.
        lease_until: DateTime<Utc>,
    },
    /// The request finished with this response; valid until `expires_at`.
    Completed {
        /// Fingerprint of the request that finished.
        fingerprint: RequestFingerprint,
        /// Its stored response.
        response: StoredResponse,
        /// End of the durable record's life.
        expires_at: DateTime<Utc>,
    },
}

/// A shared, expiring cache of idempotency keys (Redis), never the only record.
///
/// Every method may fail: the layered store then falls back to the durable store, which alone
/// decides. A lost write only costs a trip to the durable store.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait IdempotencyCache: Send + Sync {
    /// What is cached under the key, if anything.
    async fn get(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
    ) -> Result<Option<CachedState>, StoreError>;

    /// Sets a lease marker unless the key already has an entry (`SET NX`); true when set.
    async fn try_lease(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Caches a final response, replacing any lease marker, until `expires_at`.
    async fn put_completed(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Removes the key's entry (an abandoned claim).
    async fn remove(&self, scope: &Scope, key: &IdempotencyKey) -> Result<(), StoreError>;
}
