//! Two caches as one: a near layer (this node's memory) for completed responses in front of a
//! far layer (Redis) shared by every node.
//!
//! Only completed responses go near: they never change until they expire, so a node's copy can
//! never disagree with the durable record. Leases stay far, where every node sees them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    CachedState, IdempotencyCache, IdempotencyKey, RequestFingerprint, Scope, StoredResponse,
};
use crate::StoreError;

/// An [`IdempotencyCache`] that asks `near` first, then `far`, and keeps far hits near.
pub struct TieredIdempotencyCache {
    near: Arc<dyn IdempotencyCache>,
    far: Arc<dyn IdempotencyCache>,
}

impl TieredIdempotencyCache {
    /// `near` (per node) in front of `far` (shared).
    pub fn new(near: Arc<dyn IdempotencyCache>, far: Arc<dyn IdempotencyCache>) -> Self {
        Self { near, far }
    }
}

#[async_trait]
impl IdempotencyCache for TieredIdempotencyCache {
    async fn get(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
    ) -> Result<Option<CachedState>, StoreError> {
        if let Ok(Some(completed @ CachedState::Completed { .. })) = self.near.get(scope, key).await
        {
            return Ok(Some(completed));
        }
        let found = self.far.get(scope, key).await?;
        if let Some(CachedState::Completed {
            fingerprint,
            response,
            expires_at,
        }) = &found
        {
            // Best effort: a failed near write only costs the next replay a far trip.
            let _ = self
                .near
                .put_completed(scope, key, fingerprint, response, *expires_at)
                .await;
        }
        Ok(found)
    }

    async fn try_lease(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.far
            .try_lease(scope, key, fingerprint, lease_until)
            .await
    }

    async fn put_completed(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _ = self
            .near
            .put_completed(scope, key, fingerprint, response, expires_at)
            .await;
        self.far
            .put_completed(scope, key, fingerprint, response, expires_at)
            .await
    }

    async fn remove(&self, scope: &Scope, key: &IdempotencyKey) -> Result<(), StoreError> {
        let _ = self.near.remove(scope, key).await;
        self.far.remove(scope, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::cache::MockIdempotencyCache;

    fn completed() -> CachedState {
        CachedState::Completed {
            fingerprint: RequestFingerprint::compute("POST", "/x", "u", b"{}"),
            response: StoredResponse {
                status: 201,
                headers: vec![],
                body: b"{}".to_vec(),
            },
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        }
    }

    fn ids() -> (Scope, IdempotencyKey) {
        (Scope::user("u"), IdempotencyKey::parse("k").expect("valid"))
    }

    #[test]
    fn a_near_hit_never_asks_the_far_layer() {
        let mut near = MockIdempotencyCache::new();
        near.expect_get().returning(|_, _| Ok(Some(completed())));
        let mut far = MockIdempotencyCache::new();
        far.expect_get().never();
        let tiered = TieredIdempotencyCache::new(Arc::new(near), Arc::new(far));
        let (scope, key) = ids();
        let got = futures_executor::block_on(tiered.get(&scope, &key)).expect("near answers");
        assert_eq!(got, Some(completed()));
    }

    #[test]
    fn a_far_completed_hit_is_kept_near_and_leases_stay_far() {
        let mut near = MockIdempotencyCache::new();
        near.expect_get().returning(|_, _| Ok(None));
        near.expect_put_completed()
            .times(1)
            .returning(|_, _, _, _, _| Ok(()));
        near.expect_try_lease().never();
        let mut far = MockIdempotencyCache::new();
        far.expect_get().returning(|_, _| Ok(Some(completed())));
        far.expect_try_lease()
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let tiered = TieredIdempotencyCache::new(Arc::new(near), Arc::new(far));
        let (scope, key) = ids();
        let got = futures_executor::block_on(tiered.get(&scope, &key)).expect("far answers");
        assert_eq!(got, Some(completed()));
        let fp = RequestFingerprint::compute("POST", "/x", "u", b"{}");
        assert!(
            futures_executor::block_on(tiered.try_lease(&scope, &key, &fp, Utc::now()))
                .expect("far leases")
        );
    }

    #[test]
    fn a_near_lease_entry_is_not_trusted() {
        let mut near = MockIdempotencyCache::new();
        near.expect_get().returning(|_, _| {
            Ok(Some(CachedState::Leased {
                fingerprint: RequestFingerprint::compute("POST", "/x", "u", b"{}"),
                lease_until: Utc::now(),
            }))
        });
        let mut far = MockIdempotencyCache::new();
        far.expect_get().times(1).returning(|_, _| Ok(None));
        let tiered = TieredIdempotencyCache::new(Arc::new(near), Arc::new(far));
        let (scope, key) = ids();
        assert_eq!(
            futures_executor::block_on(tiered.get(&scope, &key)).expect("ok"),
            None
        );
    }
}
