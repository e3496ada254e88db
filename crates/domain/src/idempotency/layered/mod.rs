//! A durable [`IdempotencyStore`] with an [`IdempotencyCache`] in front of it.
//!
//! The durable store (Postgres) alone decides who claims a key. The cache answers the two hot
//! cases without it: a retry of a finished request (replayed from the cache) and a duplicate
//! arriving while the first is still running (told to wait). Any cache failure falls back to the
//! durable store, so a Redis outage makes keel slower, never wrong.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::{
    CachedState, Claim, ClaimOutcome, IdempotencyCache, IdempotencyKey, IdempotencyPolicy,
    IdempotencyStore, RequestFingerprint, Scope, StoredResponse,
};
use crate::StoreError;

/// What the cache contributed to one claim, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Answered from the cache.
    Hit,
    /// The cache had nothing useful; the durable store answered.
    Miss,
    /// The cache failed; the durable store answered.
    Error,
}

/// Observes how the cache is used (wired to metrics by the app).
pub type CacheObserver = Arc<dyn Fn(CacheUse) + Send + Sync>;

/// The layered store.
pub struct LayeredIdempotencyStore {
    durable: Arc<dyn IdempotencyStore>,
    cache: Arc<dyn IdempotencyCache>,
    observer: CacheObserver,
}

impl LayeredIdempotencyStore {
    /// `cache` in front of `durable`.
    pub fn new(durable: Arc<dyn IdempotencyStore>, cache: Arc<dyn IdempotencyCache>) -> Self {
        Self {
            durable,
            cache,
            observer: Arc::new(|_| {}),
        }
    }

    /// Reports every claim's [`CacheUse`] to `observer`.
    pub fn with_observer(mut self, observer: CacheObserver) -> Self {
        self.observer = observer;
        self
    }

    /// The answer the cache alone can give at `now`, if any.
    async fn cached_outcome(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        now: DateTime<Utc>,
    ) -> Option<ClaimOutcome> {
        let cached = match self.cache.get(scope, key).await {
            Ok(cached) => cached,
            Err(_) => {
                (self.observer)(CacheUse::Error);
                return None;
            }
        };
        let outcome = match cached {
            Some(CachedState::Completed {
                fingerprint: cached,
                response,
                expires_at,
            }) if expires_at > now => Some(if cached == *fingerprint {
                ClaimOutcome::Replay(response)
            } else {
                ClaimOutcome::Mismatch
            }),
            Some(CachedState::Leased {
                fingerprint: cached,
                lease_until,
            }) if lease_until > now && cached == *fingerprint => {
                let millis = (lease_until - now).num_milliseconds().max(1);
                Some(ClaimOutcome::InFlight {
                    retry_after: Duration::seconds((millis + 999) / 1000),
                })
            }
            _ => None,
        };
        (self.observer)(if outcome.is_some() {
            CacheUse::Hit
        } else {
            CacheUse::Miss
        });
        outcome
    }
}

#[async_trait]
impl IdempotencyStore for LayeredIdempotencyStore {
    async fn claim(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        policy: IdempotencyPolicy,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        if let Some(outcome) = self.cached_outcome(scope, key, fingerprint, now).await {
            return Ok(outcome);
        }
        let outcome = self
            .durable
            .claim(scope, key, fingerprint, policy, now)
            .await?;
        if let ClaimOutcome::Claimed(_) = &outcome {
            // Best effort: duplicates arriving now are told to wait without asking the durable
            // store. A failed write only costs them that trip.
            let _ = self
                .cache
                .try_lease(scope, key, fingerprint, now + policy.lease)
                .await;
        }
        Ok(outcome)
    }

    async fn complete(&self, claim: &Claim, response: &StoredResponse) -> Result<(), StoreError> {
        self.durable.complete(claim, response).await?;
        self.completed_in_transaction(claim, response).await
    }

    async fn completed_in_transaction(
        &self,
        claim: &Claim,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let _ = self
            .cache
            .put_completed(
                &claim.scope,
                &claim.key,
                &claim.fingerprint,
                response,
                claim.expires_at,
            )
            .await;
        Ok(())
    }

    async fn abandon(&self, claim: &Claim) -> Result<(), StoreError> {
        self.durable.abandon(claim).await?;
        let _ = self.cache.remove(&claim.scope, &claim.key).await;
        Ok(())
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // Cache entries expire by themselves.
        self.durable.purge_expired(now).await
    }
}

#[cfg(test)]
mod tests;
